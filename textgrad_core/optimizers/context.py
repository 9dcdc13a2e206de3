"""What an optimizer's prompt takes from a credit result beyond its feedback text: each example's context (input and
the system's output) and the trace's parameter blocks and sections, so that no value is sent twice in one prompt.

Credit strategies publish them in `CreditResult.details`:
- `example_context`: {example id: {"input": text, "output": text}};
- `parameter_blocks`: {parameter id: the exact text of that parameter's block in `trace`};
- `parameter_sections`: {the exact text of a parameters section of `trace`: [the ids of the parameters it lists]}.
Merged results (several backward() calls) and adaptive credit nest details; each is found at any depth.
"""
from __future__ import annotations

from typing import Any

from textgrad_core import prompts
from textgrad_core.credit import CreditResult
from textgrad_core.variable import Parameter

_MAX_DEPTH = 8  # details nest a few levels (merge, adaptive fallback); deeper is not credit's doing


def credit_detail(credit: CreditResult, key: str) -> dict[str, Any]:
    """Every `key` mapping found in the credit's details, at any depth, merged (the first seen wins a clash)."""
    found: dict[str, Any] = {}

    def walk(node: Any, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(node, dict):
            value = node.get(key)
            if isinstance(value, dict):
                for k, v in value.items():
                    found.setdefault(k, v)
            for k, v in node.items():
                if k != key:
                    walk(v, depth + 1)
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)

    walk(credit.details, 0)
    return found


# A context text shorter than this is shown even when it occurs elsewhere: it could match by accident, and a
# reference to it would be about as long.
MIN_REPEAT_CHARS = 80


def example_contexts(credit: CreditResult, example_ids: list[str],
                     shown: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(example id, input, output) for each of `example_ids` that the credit gave a context for, in that order.

    `shown` maps where the prompt already shows a text (e.g. "the feedback below") to that text: an input or output
    found there, or equal to an earlier example's, is given as a reference instead (no text twice in one prompt);
    an example whose input and output are both elsewhere is left out.
    """
    known = credit_detail(credit, "example_context")
    elsewhere = dict(shown or {})
    earlier: dict[str, str] = {}
    out = []
    for eid in dict.fromkeys(example_ids):
        ctx = known.get(eid)
        if not isinstance(ctx, dict):
            continue
        parts, outside = [], 0
        for part in ("input", "output"):
            text = str(ctx.get(part, ""))
            where = None
            if len(text) >= MIN_REPEAT_CHARS:
                where = next((w for w, t in elsewhere.items() if text in t), None)
                outside += where is not None
                where = where or earlier.get(text)
                earlier.setdefault(text, prompts.CONTEXT_PART_OF.format(part=part, example_id=eid))
            parts.append(prompts.CONTEXT_SHOWN_ELSEWHERE.format(where=where) if where else text)
        if outside == 2:
            continue  # the prompt shows both already (e.g. a trace holds the example)
        out.append((eid, parts[0], parts[1]))
    return out


def without_shown_parameters(text: str, credit: CreditResult, shown: list[Parameter]) -> str:
    """`text` (a trace) without the trace's copy of the values the prompt already shows.

    A parameters section whose every parameter the prompt shows is left out whole (the prompt lists them by id,
    which is how the trace refers to them); any other shown parameter's block becomes a short reference.
    """
    shown_ids = {p.id for p in shown}
    for section, ids in credit_detail(credit, "parameter_sections").items():
        if section and isinstance(ids, list) and set(ids) <= shown_ids and section in text:
            text = text.replace(section, "")
    blocks = credit_detail(credit, "parameter_blocks")
    for param in shown:
        block = blocks.get(param.id)
        if isinstance(block, str) and block and block in text:
            text = text.replace(block, prompts.PARAMETER_SHOWN_ELSEWHERE.format(id=param.id, kind=param.kind))
    return text
