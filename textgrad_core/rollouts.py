"""Rollouts: forward passes, losses and evaluation of a set of parameter values on a set of examples.

One small service at the floor of a step, used alike by the trainer's plain step and by candidate search. A
pass whose LLM call still fails after the engine's retries is a *failed example* of that evaluation — counted,
recorded as an event, and left out of every comparison — never a silent 0 and never the end of the run. The
run stops (cleanly, with a status) only when the share of failed passes passes `max_failed_fraction`.
"""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from textgrad_core.credit import ExampleTrace
from textgrad_core.engines import EngineSet
from textgrad_core.engines.context import call_context
from textgrad_core.errors import ProviderError, TextgradError
from textgrad_core.graph import Graph
from textgrad_core.task import Example, Task
from textgrad_core.variable import ParameterSet, Tape


class FailureShareExceeded(TextgradError):
    """Too many example passes failed after retries: the run stops with status `stopped`."""


@dataclass
class Rollout:
    """One example's pass: its trace when it completed, the error line when it did not."""

    example_id: str
    trace: ExampleTrace | None = None
    error: str | None = None

    @property
    def score(self) -> float | None:
        """The loss's score; None for a failed or an unscored pass."""
        return None if self.trace is None else self.trace.loss.score


@dataclass
class EvalResult:
    """Scores on a split by example id, with the examples that failed or got no score kept apart."""

    split: str
    scores: dict[str, float]
    failed: list[str] = field(default_factory=list)
    unscored: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Mean over the scored examples (0.0 when none was scored: then `n` is 0 too)."""
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0

    @property
    def n(self) -> int:
        return len(self.scores)

    def compare(self, other: "EvalResult") -> tuple[float, float, int]:
        """(mean of self, mean of other) on the examples both scored, and how many examples were left out."""
        common = sorted(set(self.scores) & set(other.scores))
        if not common:
            return self.score, other.score, 0
        left_out = len(set(self.scores) | set(other.scores)) - len(common)
        return (sum(self.scores[e] for e in common) / len(common), sum(other.scores[e] for e in common) / len(common),
                left_out)

    def state(self) -> dict[str, Any]:
        return {"split": self.split, "scores": self.scores, "failed": self.failed, "unscored": self.unscored}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "EvalResult":
        return cls(state["split"], dict(state["scores"]), list(state.get("failed", [])), list(state.get("unscored", [])))


@dataclass
class FailureCount:
    """Passes run and passes failed over the whole run, checked against the allowed share."""

    max_fraction: float = 0.25
    passes: int = 0
    failed: int = 0
    min_passes: int = 8  # one early failure out of three passes is not yet a trend

    def add(self, passes: int, failed: int) -> None:
        self.passes += passes
        self.failed += failed
        # Every pass so far failed (an endpoint that never answers): no need to wait for a trend.
        trend = self.passes >= self.min_passes or self.failed == self.passes
        if self.failed and trend and self.failed > self.max_fraction * self.passes:
            raise FailureShareExceeded(
                f"{self.failed} of {self.passes} example passes failed after retries "
                f"(more than trainer.max_failed_fraction={self.max_fraction}); see events.jsonl for each failure")

    def state(self) -> dict[str, Any]:
        return {"passes": self.passes, "failed": self.failed}

    def load_state(self, state: dict[str, Any]) -> None:
        self.passes, self.failed = int(state["passes"]), int(state["failed"])


class _RoleSwap:
    """The engine set as seen by a pass under another role (evaluation runs the system on the eval engine)."""

    def __init__(self, engines: EngineSet, role: str):
        self._engines = engines
        self._role = role
        self.ledger = engines.ledger
        self.simulated = engines.simulated

    def __getitem__(self, role: str):
        return self._engines[self._role if role == "forward" else role]


class Rollouts:
    """Runs the task's system on examples with the current (or given) parameter values."""

    def __init__(self, task: Task, engines: EngineSet, params: ParameterSet, failures: FailureCount | None = None,
                 on_failure: Callable[[dict[str, Any]], None] | None = None,
                 on_progress: Callable[[str, int, int], None] | None = None):
        self.task = task
        self.engines = engines
        self.params = params
        self.failures = failures or FailureCount()
        self.on_failure = on_failure
        self.on_progress = on_progress  # (split, done, total) as the passes of an evaluation finish

    async def run_example(self, example: Example, role: str = "forward", split: str = "train") -> Rollout:
        """One traced forward pass and its loss, on a tape of its own; a provider failure becomes a failed pass."""
        engines = _RoleSwap(self.engines, role) if role != "forward" else self.engines
        try:
            with call_context(example_id=example.id, split=split), Tape(example.id) as tape:
                output = await self.task.forward(example, self.params, engines)
                loss = await self.task.loss(output, example, engines)
        except ProviderError as exc:
            if self.on_failure:
                self.on_failure({"kind": "example_failed", "example": example.id, "split": split, "role": role,
                                 "error": str(exc)})
            return Rollout(example.id, error=str(exc))
        return Rollout(example.id, ExampleTrace(example.id, output, loss, Graph(tape.variables + [output, loss])))

    async def run(self, examples: list[Example], role: str = "forward", split: str = "train") -> list[Rollout]:
        """Every example's pass, concurrently; the failure share is checked once they are done."""
        done = 0

        async def counted(example: Example) -> Rollout:
            nonlocal done
            rollout = await self.run_example(example, role, split)
            done += 1
            if self.on_progress is not None:
                self.on_progress(split, done, len(examples))
            return rollout

        rollouts = list(await asyncio.gather(*(counted(e) for e in examples)))
        self.failures.add(len(rollouts), sum(r.error is not None for r in rollouts))
        return rollouts

    async def evaluate(self, examples: list[Example], split: str, values: dict[str, Any] | None = None) -> EvalResult:
        """Scores of `examples` on the eval engine (with `values` on the parameters for the duration, if given)."""
        with self.using_values(values):
            rollouts = await self.run(examples, role="eval", split=split)
        return summarize(rollouts, split)

    @contextmanager
    def using_values(self, values: dict[str, Any] | None) -> Iterator[None]:
        """Give the parameters other values while evaluating them (no version is recorded), then restore them."""
        if values is None:
            yield
            return
        saved = self.params.values()
        try:
            for p in self.params:
                p.value = values[p.id]
            yield
        finally:
            for p in self.params:
                p.value = saved[p.id]


def summarize(rollouts: list[Rollout], split: str) -> EvalResult:
    """The evaluation result of a list of passes: scored, failed and unscored examples apart."""
    result = EvalResult(split, {})
    for r in rollouts:
        if r.error is not None:
            result.failed.append(r.example_id)
        elif r.score is None:
            result.unscored.append(r.example_id)
        else:
            result.scores[r.example_id] = float(r.score)
    return result
