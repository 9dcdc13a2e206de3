"""GEPA's HotpotQA protocol: DSPy's answer exact match on the answer field of DSPy's chat-adapter reply.

GEPA optimizes DSPy programs (gepa-ai/gepa ships no HotpotQA metric of its own); its HotpotQA score is DSPy's
`answer_exact_match` (stanfordnlp/dspy: dspy/evaluate/metrics.py): after Unicode NFD normalization, lower case,
no punctuation, no articles (a, an, the) and single spaces, the answer must equal one of the gold answers.
DSPy's chat adapter asks for output fields between markers '[[ ## <field> ## ]]', ending with
'[[ ## completed ## ]]'; the answer is the content of the first '[[ ## answer ## ]]' section (a reply without one
has no answer: DSPy raises a parse error, scored 0 here).
"""
from __future__ import annotations

import re
import string
import unicodedata
from typing import Any

from textgrad_core.loss import MetricResult

_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_PUNCTUATION = frozenset(string.punctuation)

ANSWER_INSTRUCTION = (
    "Given the fields `question`, `passages`, produce the fields `answer`. Respond with the corresponding output "
    "fields, starting with the field `[[ ## answer ## ]]`, and then ending with the marker for "
    "`[[ ## completed ## ]]`."
)


def normalize_text(text: str) -> str:
    """DSPy's answer normalization: NFD, lower case, punctuation removed, articles removed, whitespace collapsed."""
    text = unicodedata.normalize("NFD", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_field(reply: str) -> str | None:
    """The content of the first '[[ ## answer ## ]]' section of a chat-adapter reply, stripped; None without one."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in reply.splitlines():
        header = _HEADER.match(line.strip())
        if header:
            rest = line.strip()[header.end():].strip()
            sections.append((header.group(1), [rest] if rest else []))
        else:
            sections[-1][1].append(line)
    for name, lines in sections:
        if name == "answer":
            return "\n".join(lines).strip()
    return None


def exact_match(prediction: str, answers: list[str]) -> float:
    """1.0 when the normalized prediction equals any normalized gold answer."""
    return float(any(normalize_text(prediction) == normalize_text(gold) for gold in answers))


def metric(reply: Any, target: Any) -> MetricResult:
    """DSPy's answer exact match of the reply's answer field against the gold answer(s)."""
    return answer_metric(answer_field(str(reply)), target)


def answer_metric(answer: str | None, target: Any) -> MetricResult:
    """DSPy's answer exact match of a parsed answer (None: the reply had no answer field) against the gold answer(s)."""
    answers = [str(t) for t in target] if isinstance(target, list) else [str(target)]
    if answer is None:
        return MetricResult(score=0.0, feedback=f"Wrong: expected '{answers[0]}', but the reply has no "
                            "'[[ ## answer ## ]]' field, so no answer could be parsed.")
    em = exact_match(answer, answers)
    verdict = "Correct" if em else "Wrong"
    return MetricResult(score=em, feedback=f"{verdict}: expected '{answers[0]}', got '{answer}' (exact match {em:.0f}).")


__all__ = ["ANSWER_INSTRUCTION", "answer_field", "answer_metric", "exact_match", "metric", "normalize_text"]
