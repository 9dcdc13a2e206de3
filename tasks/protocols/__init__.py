"""Scoring protocols of the tasks: our strict rules, and the published rules of the papers a task reproduces.

`task.protocol=strict` (every task's default) selects our own scorer, documented in docs/tasks.md and in each
scorer's docstring. A task that reproduces a paper also accepts that paper's protocol (`textgrad`, `trace`,
`gepa`): its scorer exactly, its starting prompts, input formatting, system prompt and answer format. One module
per paper holds its rules: `textgrad.py`, `trace.py`, `gepa.py`; `strict.py` holds the answer parsing our
strict scorers share.
"""
from __future__ import annotations

from typing import Any, Sequence

from textgrad_core.errors import ConfigError

STRICT = "strict"

# How a reply states its answer under each protocol, as a SimWorld.answer_format (the simulator fills {answer}).
# Trace's BBH template asks for an 'Answer:' line like ours; DSPy's chat adapter (GEPA) writes field markers.
ANSWER_FORMATS = {
    "strict": "Answer: {answer}",
    "textgrad": "Answer: {answer}",
    "trace": "Answer: {answer}",
    "gepa": "[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]",
}


def choose_protocol(task: str, protocol: Any, known: Sequence[str]) -> str:
    """The protocol `task.protocol=` names, or one ConfigError listing the protocols this task has."""
    if isinstance(protocol, str) and protocol in known:
        return protocol
    meaning = ("strict: ours, documented in docs/tasks.md; the others: that paper's published setting" if len(known) > 1
               else "ours, documented in docs/tasks.md; this task reproduces no paper's scoring protocol")
    raise ConfigError(f"task.protocol={protocol}: task {task} has no such protocol; use one of {', '.join(known)} "
                      f"({meaning}).")


def answer_format(protocol: str) -> str:
    """The answer format a reply uses under `protocol` (what the simulator is told to write)."""
    return ANSWER_FORMATS[protocol]


__all__ = ["ANSWER_FORMATS", "STRICT", "answer_format", "choose_protocol"]
