"""The mechanical checks the shipped tasks declare beside their textual constraints (textgrad_core.validators).

A task declares only what a correct value must satisfy for its system to work: the answer line its parser reads,
the template slot its render op fills, the function its sandboxed call runs, the names its tool parser expects, the
range its module reads a number in. Every check here is a `Pattern`, `NumberRange` or `Compiles`, so it is saved
with the parameter (graph.json, checkpoints) and rebuilt on resume; the starting values of every task pass them
(tests/test_task_validators.py). docs/new-task.md ("Validators") lists which task declares which.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from textgrad_core.errors import ConfigError
from textgrad_core.validators import Compiles, NumberRange, Pattern, Validator, first_failure, from_config
from textgrad_core.variable import Parameter

# The strict parsers (tasks/protocols/strict.py and the modules' own) find the answer after 'Answer:', any case.
_ANSWER_MARK = r"(?i)answer\s*:"


def answer_line(example: str = "Answer: $VALUE",
                reader: str = "the answer parser reads the text after the last 'Answer:'") -> Pattern:
    """The instruction keeps asking for the final line the answer parser reads (after the last 'Answer:')."""
    return Pattern(_ANSWER_MARK, f"it must keep asking for the final line '{example}' ({reader})")


def answer_lines_in_demos() -> Pattern:
    """Worked examples keep their 'Answer: ...' lines, the format the model copies and the parser reads."""
    return Pattern(r"(?i)^\s*answer\s*:", "its worked examples must keep their lines 'Answer: <answer>'")


def line_marker(marker: str, what: str) -> Pattern:
    """The instruction keeps asking for a reply line with `marker` (e.g. 'Query:'), which `what` reads."""
    words = r"\s*".join(re.escape(w) for w in marker.rstrip(":").split())
    return Pattern(rf"(?i){words}\s*:", f"it must keep asking for a line '{marker} ...' ({what} reads it)")


def literal(text: str, why: str) -> Pattern:
    """The value keeps `text` exactly as written (case included), e.g. a call syntax a parser looks for."""
    return Pattern(re.escape(text), f"it must keep {text!r} as written ({why})")


def slot_once(slot: str) -> Pattern:
    """A template holds `slot` exactly once (where the input goes: missing, the model never sees it)."""
    s = re.escape(slot)
    return Pattern(rf"(?s)\A(?:(?!{s}).)*{s}(?:(?!{s}).)*\Z", f"it must contain the slot {slot} exactly once")


def mentions_all(words: Iterable[str], why: str) -> Pattern:
    """The text names every one of `words` (whole words, any order): the names a parser or a tool expects."""
    words = list(words)
    ahead = "".join(rf"(?=.*(?<![\w]){re.escape(w)}(?![\w]))" for w in words)
    return Pattern(rf"(?s)\A{ahead}", f"it must name {', '.join(repr(w) for w in words)} ({why})")


def mentions_any(words: Iterable[str], why: str) -> Pattern:
    """The text names at least one of `words` (any case)."""
    words = list(words)
    return Pattern("(?i)" + "|".join(re.escape(w) for w in words),
                   f"it must mention {' or '.join(repr(w) for w in words)} ({why})")


def whole_number(low: int, high: int) -> NumberRange:
    """A whole number in [low, high] (a count the module reads)."""
    return NumberRange(low, high, integer=True)


def fraction() -> NumberRange:
    """A finite number in [0, 1] (a share or a threshold)."""
    return NumberRange(0, 1)


def defines(function: str) -> Compiles:
    """Python source that compiles and defines the top-level function the system calls."""
    return Compiles(function)


def with_validators(param: Parameter, *validators: Validator | dict[str, Any]) -> Parameter:
    """`param` (fresh, e.g. from a module's `parameters()`) with `validators` declared after its own.

    The initial value must pass them: a value that does not is one ConfigError naming the parameter and the fix.
    """
    declared = [from_config(v) for v in validators]
    failure = first_failure(declared, param.value, param)
    if failure is not None:
        raise ConfigError(f"Parameter {param.name!r}: its initial value is {failure}; fix the value or the validator.")
    param.validators = list(param.validators) + declared
    return param


def declare(params: list[Parameter], by_name: dict[str, list[Validator]]) -> list[Parameter]:
    """`params` with the validators `by_name` lists for each name declared (a name not in `params` is a bug here)."""
    unknown = sorted(set(by_name) - {p.name for p in params})
    if unknown:  # a renamed module parameter would silently lose its checks
        raise ConfigError(f"validators declared for unknown parameter(s) {unknown}; the task's parameters are "
                          f"{sorted(p.name for p in params)}.")
    return [with_validators(p, *by_name.get(p.name, [])) for p in params]


__all__ = ["answer_line", "answer_lines_in_demos", "declare", "defines", "fraction", "line_marker", "literal", "mentions_all",
           "mentions_any", "slot_once", "whole_number", "with_validators"]
