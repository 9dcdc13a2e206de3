"""How the simulator engine reads text: which rubric guidance a prompt gives (negations and contradictions count
against it), whether feedback says an output is right or wrong, and which parts of an optimizer prompt are feedback.

Everything here is a fixed, documented rule (docs/simulator.md), so a prompt cannot score by quoting a rubric
keyword inside "do not ...", and no tag or header of a prompt (`<TRACE examples="3">`) is ever read as feedback.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Protocol

# Clause boundaries: a negation reaches from its cue to the end of its clause, no further.
_CLAUSE_END = re.compile(r"[.;:!?\n,]+|\s(?:but|however|instead,|yet|then)\s", re.IGNORECASE)
# Words that negate what follows them in the same clause.
_NEGATION = re.compile(r"\b(?:do\s+not|does\s+not|don'?t|doesn'?t|never|avoid(?:ing)?|without|not|no\s+need\s+to|"
                       r"refrain\s+from|instead\s+of|rather\s+than|stop)\b", re.IGNORECASE)
# A negated negation is an instruction to do it: "do not forget to double-check", "never skip the check".
_DOUBLE_NEGATION = re.compile(r"^\W*(?:\w+\W+){0,2}?(?:forget|fail|omit|skip|neglect|miss|leave\s+out)\b", re.IGNORECASE)
# Instructions that contradict answering the question at all; each affirmative one counts against one item.
SABOTAGE = ("random number", "random answer", "at random", "randomly", "guess", "make up", "made-up", "wrong answer",
            "ignore the question", "ignore the input", "any number")

# ---- rubric guidance -----------------------------------------------------------------------------------------------


class Guidance(Protocol):
    """What this module needs of a rubric item (engines.sim.RubricItem)."""

    keywords: list[str]


@dataclass(frozen=True)
class Clause:
    """A clause of a text: its span, so a negated one can be cut out again."""

    start: int
    end: int  # the end of the clause, its separator included
    text: str


def clauses(text: str) -> list[Clause]:
    """The clauses of `text`, split at sentence and clause punctuation and at 'but', 'however', ..."""
    out, start = [], 0
    for sep in _CLAUSE_END.finditer(text):
        if sep.start() > start:
            out.append(Clause(start, sep.end(), text[start:sep.start()]))
        start = sep.end()
    if start < len(text):
        out.append(Clause(start, len(text), text[start:]))
    return out


def _negated(clause_low: str, pos: int) -> bool:
    """Whether the phrase at `pos` of a (lower-cased) clause is under a negation cue before it in the clause."""
    for cue in _NEGATION.finditer(clause_low, 0, pos):
        if not _DOUBLE_NEGATION.match(clause_low[cue.end():pos]):
            return True
    return False


def mentions(clause: Clause, phrases: Iterable[str]) -> tuple[bool, bool]:
    """(affirmed, negated): whether some phrase occurs in the clause outside / under a negation."""
    low = clause.text.lower()
    affirmed = negated = False
    for phrase in phrases:
        p = phrase.lower()
        at = low.find(p) if p else -1
        while at >= 0:
            if _negated(low, at):
                negated = True
            else:
                affirmed = True
            at = low.find(p, at + 1)
    return affirmed, negated


def stance(text: str, item: Guidance) -> int:
    """+1: `text` gives the guidance; -1: it only negates or contradicts it; 0: absent, or both given and negated.

    A keyword inside a "do not ...", "never ...", "avoid ...", "without ..." clause is not the guidance: it is an
    instruction against it. A text that both gives and negates it contradicts itself, which cancels it."""
    affirmed = negated = False
    for clause in clauses(text):
        a, n = mentions(clause, item.keywords)
        affirmed, negated = affirmed or a, negated or n
    return (1 if affirmed else 0) - (1 if negated else 0) if affirmed != negated else 0


def sabotaged(text: str) -> bool:
    """Whether `text` affirmatively asks for a random, guessed or wrong answer (which contradicts every item)."""
    return any(mentions(c, SABOTAGE)[0] for c in clauses(text))


def guidance_score(text: str, rubric: list[Guidance]) -> int:
    """Items given minus items negated or contradicted (a sabotaging instruction counts against one more)."""
    return sum(stance(text, i) for i in rubric) - (1 if rubric and sabotaged(text) else 0)


def without_contradictions(text: str, item: Guidance | None = None) -> str:
    """`text` without its clauses that negate `item` (or, with no item, that ask for a random or guessed answer)."""
    cut = [c for c in clauses(text)
           if (mentions(c, item.keywords)[1] if item is not None else mentions(c, SABOTAGE)[0])]
    if not cut:
        return text
    kept, last = [], 0
    for c in cut:
        kept.append(text[last:c.start])
        last = c.end
    kept.append(text[last:])
    return re.sub(r"\s{2,}", " ", "".join(kept)).strip()


# ---- feedback ------------------------------------------------------------------------------------------------------
POSITIVE, NEGATIVE, NEUTRAL = "positive", "negative", "neutral"

_NO_CHANGE = re.compile(r"no changes? (?:is |are |was )?(?:needed|required|necessary)|needs? no change|"
                        r"nothing (?:needs|has) to (?:change|be changed)|already contains all the guidance|"
                        r"nothing is missing|no change for this input", re.IGNORECASE)
_NOT_A_FAULT = re.compile(r"\b(?:no|without|zero) (?:errors?|mistakes?|failures?)\b", re.IGNORECASE)
_WRONG = re.compile(r"\b(?:wrong|incorrect|not (?:correct|right)|isn'?t (?:correct|right)|missing|lacks?|lacking|"
                    r"fails?|failed|failing|errors?|mistakes?|should|must|did not|didn'?t|does not|doesn'?t|"
                    r"could not|cannot|unable|mismatch|instead of)\b", re.IGNORECASE)
_RIGHT = re.compile(r"\b(?:correct|right|looks good|good|passed|passes|fine|accurate|matches|as expected)\b|"
                    r"score:\s*1(?:\.0+)?\b", re.IGNORECASE)


def polarity(feedback: str) -> str:
    """Whether feedback says the output is right ('positive'), wrong ('negative'), or neither ('neutral').

    "No change is needed" and "already correct" are positive; "wrong", "incorrect", "missing", "fails", "should ..."
    are negative and win over a positive word in the same feedback ("Correct format, but the total is wrong")."""
    if _NO_CHANGE.search(feedback):
        return POSITIVE
    text = _NOT_A_FAULT.sub(" ", feedback)
    if _WRONG.search(text):
        return NEGATIVE
    return POSITIVE if _RIGHT.search(text) else NEUTRAL


@dataclass(frozen=True)
class FeedbackItem:
    """One piece of feedback as the simulator reads it: its prose (tags removed) and whether it says right or wrong."""

    text: str
    polarity: str

    @property
    def wrong(self) -> bool:
        """Whether it asks for a change: feedback that does not say the output is right (neutral wording counts,
        e.g. "expected 5, got 4")."""
        return self.polarity != POSITIVE


_TAG = re.compile(r"</?[A-Z][A-Z_]*(?:\s[^>\n]*)?/?>")
_TRACE = re.compile(r"^<TRACE(?: [^>\n]*)?>\n.*?^</TRACE>$", re.DOTALL | re.MULTILINE)
_TRACE_EXAMPLE = re.compile(r'^<EXAMPLE id="[^"\n]*" score="([^"\n]*)">\n.*?^<OUTPUT_FEEDBACK>\n(.*?)\n</OUTPUT_FEEDBACK>$',
                            re.DOTALL | re.MULTILINE)
_EXAMPLE = re.compile(r'^<EXAMPLE id="[^"\n]*">\n(.*?)\n</EXAMPLE>$', re.DOTALL | re.MULTILINE)
_SUCCESSOR = re.compile(r'^<SUCCESSOR_FEEDBACK from="[^"\n]*">\n(.*?)\n</SUCCESSOR_FEEDBACK>$', re.DOTALL | re.MULTILINE)
_PARAMETER = re.compile(r'^<PARAMETER id="([^"\n]*)">\n(.*?)\n</PARAMETER>$', re.DOTALL | re.MULTILINE)
_SCORED_VALUE = re.compile(r'^<VALUE score="([^"\n]*)">\n(.*?)\n</VALUE>$', re.DOTALL | re.MULTILINE)


def prose(text: str) -> str:
    """The words of a feedback text without its tags (so `<TRACE examples="3">` is never read as 'examples')."""
    return re.sub(r"[ \t]+", " ", _TAG.sub(" ", text)).strip()


def _item(text: str, score: str | None = None) -> FeedbackItem:
    words = prose(text)
    try:  # a scored example is right or wrong by its score, whatever its wording
        value = float(score) if score is not None else None
    except ValueError:
        value = None
    return FeedbackItem(words, polarity(words) if value is None else POSITIVE if value >= 1.0 else NEGATIVE)


def feedback_items(section: str) -> list[FeedbackItem]:
    """The feedback of an optimizer prompt's feedback section, one item per example (or per successor).

    A trace contributes only its examples' output feedback (scored); per-example blocks their text; values,
    operations, sources and headers of the prompt are never read as feedback."""
    items = [_item(fb, score) for trace in _TRACE.findall(section) for score, fb in _TRACE_EXAMPLE.findall(trace)]
    rest = _TRACE.sub("", section)
    for block in _EXAMPLE.findall(rest) or ([rest] if rest.strip() else []):
        successors = _SUCCESSOR.findall(block)
        items += [_item(s) for s in successors] if successors else ([_item(block)] if prose(block) else [])
    return [i for i in items if i.text]


def feedback_by_parameter(section: str) -> tuple[list[FeedbackItem], dict[str, list[FeedbackItem]]]:
    """A joint update's feedback: (items every parameter shares, i.e. the trace's, items of each parameter id)."""
    own = {pid: feedback_items(body) for pid, body in _PARAMETER.findall(_TRACE.sub("", section))}
    shared_text = _PARAMETER.sub("", section)
    return feedback_items(shared_text), own


def scored_values(section: str) -> list[tuple[float, str]]:
    """The (score, value) pairs of an OPRO history, best first."""
    pairs = []
    for score, value in _SCORED_VALUE.findall(section):
        try:
            pairs.append((float(score), value))
        except ValueError:
            continue
    return sorted(pairs, key=lambda sv: -sv[0])


def names(item_text: str, hint: str) -> bool:
    """Whether feedback prose names a rubric item: its hint, verbatim (keys are the simulator's own ids, never read)."""
    return bool(hint) and hint in item_text
