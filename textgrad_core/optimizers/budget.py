"""What fits in a prompt: approximate tokens, cuts that keep a value's head and tail, and a budget shared by many values.

No tokenizer is tied to an engine, so tokens are estimated as characters / 4 (rounded up); budgets are soft bounds
on what the optimizer is shown, not exact token counts of any provider.
"""
from __future__ import annotations

CHARS_PER_TOKEN = 4
# Below this many characters a value is not cut further: a few hundred characters of head and tail still read.
MIN_KEPT_CHARS = 200


def approx_tokens(text: str) -> int:
    """Tokens of `text` estimated as characters / 4, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def cut_mark(removed: int) -> str:
    """The visible mark left where characters were cut out of the middle of a value."""
    return f"\n...[cut: {removed} characters of the middle]...\n"


def clip_middle(text: str, limit: int | None) -> str:
    """`text` whole when it has at most `limit` characters, else its head and tail around a visible mark.

    The tail is kept as well as the head because the end of a response is where its answer is.
    """
    if limit is None or len(text) <= limit:
        return text
    limit = max(limit, 2)
    head = limit // 2
    tail = limit - head
    return text[:head] + cut_mark(len(text) - limit) + text[len(text) - tail:]


def shared_cap(lengths: list[int], room: int, floor: int = MIN_KEPT_CHARS) -> int | None:
    """The largest per-value cap C with sum(min(length, C)) <= room (None when everything fits whole).

    Short values stay whole and long ones are cut to the same length ("water-filling"), never below `floor`.
    """
    if sum(lengths) <= room:
        return None
    ordered = sorted(lengths)
    remaining, count = room, len(ordered)
    for i, n in enumerate(ordered):
        # If every value from i on is cut to the same cap, each gets remaining / (count - i).
        share = remaining // (count - i)
        if n > share:
            return max(share, floor)
        remaining -= n
    return max(ordered[-1], floor)  # not reached: the sum exceeded the room


def fit_texts(texts: list[str], room_chars: int, floor: int = MIN_KEPT_CHARS) -> list[str]:
    """The texts, cut with `clip_middle` to one shared cap so that together they take about `room_chars` characters."""
    cap = shared_cap([len(t) for t in texts], max(room_chars, 0), floor)
    return texts if cap is None else [clip_middle(t, cap) for t in texts]
