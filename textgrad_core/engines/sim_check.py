"""The simulator's answer check: does the task's parser read the replies the simulator writes?

The simulator always ends a forward reply with `SimWorld.answer_format` (default `Answer: {answer}`). A task whose
parser reads something else (`Language: ...`, a JSON object, a code fence) scores 0.000 on the simulator, and
without this check nothing says why. The check runs the task on a few validation examples with a private
simulator that always answers right (no run log, no cache, no ledger of the run): if not one of those right
answers scores above 0, the parser never matched the format, and the check returns a one-line warning.
"""
from __future__ import annotations

import asyncio
from typing import Any

from textgrad_core.engines import EngineSet
from textgrad_core.engines.config import CacheConfig
from textgrad_core.engines.sim import SimBackend, SimWorld
from textgrad_core.rollouts import Rollouts
from textgrad_core.task import Splits, Task
from textgrad_core.variable import ParameterSet, Variable

_LLM_KINDS = ("llm", "formatted_llm")


def sim_world_of(engines: Any) -> SimWorld | None:
    """The world of the simulator behind the forward role, or None when the forward engine is not the simulator."""
    try:
        backend = engines["forward"].backend
    except (KeyError, AttributeError):
        return None
    return backend.world if isinstance(backend, SimBackend) else None


def parser_names(output: Variable) -> list[str]:
    """The traced operations that read an LLM reply on the way to `output` (the task's answer parsers), by name."""
    found: set[str] = set()
    seen: set[int] = set()
    stack = [output]
    while stack:
        var = stack.pop()
        if id(var) in seen or var.op is None:
            continue
        seen.add(id(var))
        inputs = [v for _, v in var.op.inputs]
        if var.op.kind not in _LLM_KINDS and any(v.op is not None and v.op.kind in _LLM_KINDS for v in inputs):
            found.add(var.op.name)
        stack.extend(inputs)
    return sorted(found)


async def sim_answer_check(task: Task, splits: Splits, engines: Any, limit: int = 5) -> str | None:
    """None when the task reads the simulator's answers (or the forward engine is not the simulator, or the
    simulator knows none of the validation answers); else a one-line warning naming the task's parser and the
    simulator's answer format. Runs at most `limit` validation examples on a private, always-right simulator."""
    world = sim_world_of(engines)
    if world is None:
        return None
    known = [e for e in splits.val if isinstance(e.input, str) and e.input in world.answers][: max(limit, 1)]
    if not known:
        return None
    sure = world.model_copy(update={"base_accuracy": 1.0, "max_accuracy": 1.0, "min_accuracy": 1.0})
    config = engines["forward"].config.model_copy(update={"cache": CacheConfig(enabled=False)})
    private = EngineSet({"forward": config}, sim_world=sure)  # its own ledger, no call log: the run sees nothing
    rollouts = await Rollouts(task, private, ParameterSet(task.initial_parameters())).run(known, split="val")
    scored = [r for r in rollouts if r.trace is not None and r.score is not None]
    if not scored or any(r.score > 0 for r in scored):
        return None
    parsers = sorted({n for r in scored for n in parser_names(r.trace.output)})
    parser = ", ".join(f"'{n}'" for n in parsers) if parsers else f"{type(task).__name__}.metric"
    return (f"SIMULATION: 0 of {len(scored)} simulator replies parsed on validation: task '{task.name}' reads them "
            f"with {parser}, but the simulator always answers {world.answer_format!r} (SimWorld.answer_format); "
            f"set answer_format in {type(task).__name__}.sim_world() to what the parser reads (docs/new-task.md).")


def sim_answer_check_sync(task: Task, splits: Splits, engines: Any, limit: int = 5) -> str | None:
    """`sim_answer_check` for callers outside an event loop."""
    return asyncio.run(sim_answer_check(task, splits, engines, limit))
