"""What modules saw on TRAINING passes, per parameter: the optimizers that need it (bootstrap, static) read it here.

A module calls `observe(param, input, output)` during a forward pass. Only a pass on the training split with an
example id (the trainer's call context) is kept, so validation and test examples can never become demos or reach
an optimizer prompt. Records are keyed by the Parameter object (a weak reference: they go with the run's
parameters) and by example id; readers order them by example id (or by the batch order they are given), never by
completion order, so a prompt built from them depends only on the run.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from textgrad_core.engines.context import current_call_context
from textgrad_core.variable import Parameter

TRAIN_SPLIT = "train"


@dataclass(frozen=True)
class Observation:
    """One training pass as a module saw it: the example, what the module got and what it produced."""

    example_id: str
    split: str
    input: Any
    output: Any
    consumer: str  # the module (and op) that used the parameter


@dataclass(frozen=True)
class Declaration:
    """Where a parameter is used, known before any run: the module that declared it, in words and source."""

    module: str
    description: str
    source: str


_book: "weakref.WeakKeyDictionary[Parameter, dict[str, Observation]]" = weakref.WeakKeyDictionary()
_declared: "weakref.WeakKeyDictionary[Parameter, Declaration]" = weakref.WeakKeyDictionary()


def declare(param: Parameter, module: str, description: str, source: str) -> None:
    """Record which module uses `param` and how (its docstring and source): the static structure of the system."""
    _declared[param] = Declaration(module, description, source)


def declaration(param: Parameter) -> Declaration | None:
    """The module that declared `param`, or None for a parameter no module declared (a task's own)."""
    return _declared.get(param)


def observe(param: Parameter, input: Any, output: Any, consumer: str) -> bool:
    """Keep what a module saw for `param` on this pass, when it is a training pass; returns whether it was kept."""
    context = current_call_context()
    example_id, split = context.get("example_id"), context.get("split")
    if split != TRAIN_SPLIT or not example_id:
        return False
    _book.setdefault(param, {})[str(example_id)] = Observation(str(example_id), split, input, output, consumer)
    return True


def observations(param: Parameter, example_ids: list[str] | None = None) -> list[Observation]:
    """The training observations of `param`: of `example_ids` in that order when given, else all by example id."""
    seen = _book.get(param, {})
    if example_ids is None:
        return [seen[k] for k in sorted(seen)]
    return [seen[k] for k in example_ids if k in seen]


def consumers(param: Parameter) -> list[str]:
    """Which modules used `param` on training passes (sorted, each once)."""
    return sorted({o.consumer for o in _book.get(param, {}).values()})


def forget(param: Parameter) -> None:
    """Drop every observation of `param` (a test, or a run that starts over)."""
    _book.pop(param, None)
