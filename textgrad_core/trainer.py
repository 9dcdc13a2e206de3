"""The training loop: minibatches, forward, credit, optimizer step, validation gating, final test evaluation."""
from __future__ import annotations

import asyncio
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field

from textgrad_core.credit import CreditAssigner, CreditResult, ExampleTrace
from textgrad_core.engines import EngineSet, UsageTotals
from textgrad_core.errors import BudgetExceeded
from textgrad_core.graph import Graph
from textgrad_core.optimizers.base import Optimizer
from textgrad_core.rundir import RunDir
from textgrad_core.task import Example, Splits, Task
from textgrad_core.variable import Parameter, ParameterSet, ParameterVersion, Tape

if TYPE_CHECKING:
    from textgrad_core.search import CandidateSearch

PHASES = ("forward", "credit", "optimizer", "validation", "test")


class TrainerConfig(BaseModel):
    """How long to train and how to accept updates."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=3, ge=1)
    max_steps: int | None = Field(default=None, ge=0)
    val_size: int | None = None  # evaluate on the first n validation examples (None: all)
    test_size: int | None = None
    seed: int = 0
    accept: str = "not_worse"  # "not_worse" (TextGrad's rule) or "better"
    eval_test: bool = True
    progress: bool = True


@dataclass
class EvalResult:
    """Mean score on a split and the score of every example."""

    split: str
    score: float
    scores: dict[str, float]


@dataclass
class PhaseStats:
    """Calls, tokens, cost and wall time spent in one phase, summed over the run."""

    usage: UsageTotals = field(default_factory=UsageTotals)
    wall_s: float = 0.0

    def row(self) -> dict[str, Any]:
        u = self.usage
        return {"calls": u.calls - u.cache_hits, "cache_hits": u.cache_hits, "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens, "cost_usd": round(u.cost_usd, 6), "wall_s": round(self.wall_s, 3)}


class Trainer:
    """Optimizes a task's parameters with an injected credit strategy and optimizer."""

    def __init__(self, task: Task, engines: EngineSet, credit: CreditAssigner, optimizer: Optimizer,
                 config: TrainerConfig | None = None, run: RunDir | None = None, splits: Splits | None = None,
                 on_step: Callable[[dict[str, Any]], None] | None = None, search: "CandidateSearch | None" = None):
        self.task = task
        self.engines = engines
        self.credit = credit
        self.optimizer = optimizer
        self.search = search  # when set, each step's update comes from candidate search around the optimizer
        self.config = config or TrainerConfig()
        self.run = run
        self.splits = splits or task.load_splits()
        self.params = ParameterSet(task.initial_parameters())
        self.phases = {p: PhaseStats() for p in PHASES}
        self.on_step = on_step
        self.history: list[dict[str, Any]] = []

    # ---- phases and accounting --------------------------------------------------------------
    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute every call and second spent inside to `name`."""
        before, start = self.engines.ledger.total(), time.perf_counter()
        try:
            yield
        finally:
            stats = self.phases[name]
            stats.usage = stats.usage.plus(self.engines.ledger.total().minus(before))
            stats.wall_s += time.perf_counter() - start

    # ---- forward and evaluation -------------------------------------------------------------
    async def run_example(self, example: Example, role: str = "forward") -> ExampleTrace:
        """One traced forward pass and its loss, recorded on a tape of its own."""
        engines = _RoleSwap(self.engines, role) if role != "forward" else self.engines
        with Tape(example.id) as tape:
            output = await self.task.forward(example, self.params, engines)
            loss = await self.task.loss(output, example, engines)
        return ExampleTrace(example.id, output, loss, Graph(tape.variables + [output, loss]))

    async def evaluate(self, examples: list[Example], split: str) -> EvalResult:
        """Mean score on `examples`; uses the eval engine, and nothing evaluated here reaches credit or optimizer."""
        traces = await asyncio.gather(*(self.run_example(e, role="eval") for e in examples))
        scores = {t.example_id: t.score for t in traces}
        return EvalResult(split, sum(scores.values()) / max(len(scores), 1), scores)

    def val_examples(self) -> list[Example]:
        """The validation examples used to accept updates."""
        return self.splits.val[: self.config.val_size] if self.config.val_size else self.splits.val

    def _test(self) -> list[Example]:
        return self.splits.test[: self.config.test_size] if self.config.test_size else self.splits.test

    def batches(self) -> list[list[Example]]:
        """The minibatches of every epoch, shuffled with the run's seed."""
        rng = random.Random(self.config.seed)
        out: list[list[Example]] = []
        for _ in range(self.config.epochs):
            order = list(self.splits.train)
            rng.shuffle(order)
            out += [order[i:i + self.config.batch_size] for i in range(0, len(order), self.config.batch_size)]
        return out[: self.config.max_steps] if self.config.max_steps is not None else out

    @contextmanager
    def using_values(self, values: dict[str, Any]) -> Iterator[None]:
        """Give the parameters other values while evaluating them (no version is recorded), then restore them."""
        saved = self.params.values()
        try:
            for p in self.params:
                p.value = values[p.id]
            yield
        finally:
            for p in self.params:
                p.value = saved[p.id]

    # ---- one step -----------------------------------------------------------------------------
    async def forward_and_credit(self, step: int, batch: list[Example]) -> tuple[float, CreditResult]:
        """Forward passes on the minibatch and credit assignment; returns the mean train score and the credit."""
        with self.phase("forward"):
            traces = await asyncio.gather(*(self.run_example(e) for e in batch))
        train_score = sum(t.score for t in traces) / len(traces)
        params = list(self.params)
        with self.phase("credit"):
            credit = await self.credit.assign(list(traces), params, self.engines["credit"])
        if self.run:
            for pid, items in credit.feedback.items():
                for item in items:
                    self.run.gradients.write({"step": step, "param": pid, "example": item.example_id, "feedback": item.text,
                                              "strategy": credit.strategy})
            if credit.trace is not None:
                self.run.gradients.write({"step": step, "param": "*", "trace": credit.trace, "strategy": credit.strategy})
        return train_score, credit

    async def step(self, step: int, batch: list[Example], best_val: float) -> tuple[float, dict[str, Any]]:
        """Forward, credit, update and validate; revert the update if validation got worse."""
        if self.search is not None:
            return await self.search.step(self, step, batch, best_val)
        before = self.params.versions()
        train_score, credit = await self.forward_and_credit(step, batch)
        params = list(self.params)
        with self.phase("optimizer"):
            updates = await self.optimizer.step(params, credit, self.engines["optimizer"], step,
                                                events=self.run.events if self.run else None)
        changed = [p for p in params if p.version != before[p.id]]
        for p in changed:
            for entry in p.history:
                if entry.version > before[p.id]:
                    self.log_version(p, entry)
        val = best_val
        decision = "no change"
        if changed:
            with self.phase("validation"):
                val = (await self.evaluate(self.val_examples(), "val")).score
            worse = val < best_val if self.config.accept == "not_worse" else val <= best_val
            if worse:
                rule = "<" if self.config.accept == "not_worse" else "is not above"
                self.revert_changes(before, step, f"revert: validation {val:.3f} {rule} best {best_val:.3f}")
                decision = "reverted"
            else:
                decision = "accepted"
        record = {"step": step, "train_score": round(train_score, 4), "val_score": round(val, 4),
                  "best_val": round(max(best_val, val) if decision == "accepted" else best_val, 4), "decision": decision,
                  "updates": [u.__dict__ for u in updates], "batch": [e.id for e in batch], "credit": credit.strategy,
                  "credit_details": credit.details}
        return (val if decision == "accepted" else best_val), record

    def revert_changes(self, before: dict[str, int], step: int, reason: str) -> list[str]:
        """Restore every parameter whose version moved since `before`; the reverts are logged as new versions."""
        reverted = []
        for p in self.params:
            if p.version != before[p.id]:
                self.log_version(p, p.revert_to(before[p.id], step, reason=reason))
                reverted.append(p.id)
        return reverted

    def log_version(self, param: Parameter, entry: ParameterVersion) -> None:
        """Write one parameter version to the run log."""
        if self.run:
            self.run.parameter_version(param, entry)

    def _checkpoint(self, step: int, best_val: float) -> None:
        if self.run:
            state = {"step": step, "best_val": best_val, "simulated": self.run.simulated,
                     "parameters": {p.id: {"value": p.value, "version": p.version,
                                           "history": [h.__dict__ for h in p.history]} for p in self.params}}
            if self.search is not None:
                state["search"] = self.search.state()
            self.run.checkpoint(state)

    # ---- the loop -----------------------------------------------------------------------------
    async def train(self) -> dict[str, Any]:
        """Run every step, then evaluate on test; returns (and writes) the summary."""
        start = time.perf_counter()
        if self.run:
            for p in self.params:
                self.log_version(p, p.history[0])
        with self.phase("validation"):
            initial = await self.evaluate(self.val_examples(), "val")
        initial_val = initial.score
        if self.search is not None:
            self.search.start(self.params.values(), initial.scores)
        initial_params = self.params.values()
        best_val = initial_val
        stopped = None
        batches = self.batches()
        self._emit({"step": 0, "val_score": round(initial_val, 4), "best_val": round(initial_val, 4), "decision": "initial"})
        with _progress(self.config.progress, len(batches), self.engines.simulated) as advance:
            for step, batch in enumerate(batches, 1):
                before = self.params.versions()
                try:
                    best_val, record = await self.step(step, batch, best_val)
                except BudgetExceeded as exc:
                    stopped = str(exc)
                    # An update the budget stopped before validation finished is never left in place.
                    reverted = self.revert_changes(before, step, "revert: budget exhausted before validation")
                    if self.run:
                        self.run.events.write({"kind": "budget_exceeded", "step": step, "message": stopped,
                                               "reverted": reverted})
                        self._checkpoint(step, best_val)
                    break
                self._emit(record)
                self._checkpoint(step, best_val)
                advance(best_val)
        test = initial_test = None
        if self.config.eval_test and stopped is None:
            with self.phase("test"):
                test = (await self.evaluate(self._test(), "test")).score
                if self.params.values() == initial_params:
                    initial_test = test  # nothing was accepted: the same prompts would be scored twice
                else:
                    with self.using_values(initial_params):  # score the initial parameters on test too
                        initial_test = (await self.evaluate(self._test(), "test")).score
        return self._summary(initial_val, best_val, initial_test, test, time.perf_counter() - start, stopped)

    def _emit(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.run:
            self.run.metric(record)
        if self.on_step:
            self.on_step(record)

    def _summary(self, initial_val: float, final_val: float, initial_test: float | None, test: float | None,
                 wall_s: float, stopped: str | None) -> dict[str, Any]:
        total = self.engines.ledger.total()
        summary = {
            "task": self.task.name,
            "simulated": self.engines.simulated,
            "notice": ("SIMULATION: scores come from the offline simulator engine, a test and demo device; "
                       "they are not LLM results.") if self.engines.simulated else None,
            "engines": self.engines.describe(),
            "credit": self.credit.name,
            "optimizer": self.optimizer.name,
            "search": self.search.describe() if self.search is not None else None,
            "splits": {"train": len(self.splits.train), "val": len(self.val_examples()), "test": len(self._test())},
            "steps": len([h for h in self.history if h.get("step", 0) > 0]),
            "val": {"initial": round(initial_val, 4), "final": round(final_val, 4)},
            "test": {"initial": None if initial_test is None else round(initial_test, 4),
                     "final": None if test is None else round(test, 4)},
            "usage": {"calls": total.calls - total.cache_hits, "cache_hits": total.cache_hits,
                      "input_tokens": total.input_tokens, "output_tokens": total.output_tokens,
                      "cost_usd": round(total.cost_usd, 6), "unpriced_models": sorted(self.engines.ledger.prices.unpriced)},
            "phases": {name: stats.row() for name, stats in self.phases.items()},
            "by_role": {r: u.model_dump() for r, u in self.engines.ledger.by_role().items()},
            "wall_s": round(wall_s, 3),
            "stopped": stopped,
            "parameters": {p.id: {"version": p.version, "value": p.value} for p in self.params},
        }
        if self.run:
            self.run.summary(summary)
        return summary


class _RoleSwap:
    """An EngineSet view whose forward role is served by another role's engine (evaluation uses `eval`)."""

    def __init__(self, engines: EngineSet, role: str):
        self._engines = engines
        self._role = role
        self.ledger = engines.ledger
        self.simulated = engines.simulated

    def __getitem__(self, role: str):
        return self._engines[self._role if role == "forward" else role]


@contextmanager
def _progress(enabled: bool, total: int, simulated: bool) -> Iterator[Callable[[float], None]]:
    if not enabled:
        yield lambda best: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    label = "[yellow]SIMULATION[/] training" if simulated else "training"
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("best val {task.fields[best]}"),
                  TimeElapsedColumn(), transient=False) as bar:
        task_id = bar.add_task("train", total=total, best="-")
        yield lambda best: bar.update(task_id, advance=1, best=f"{best:.3f}")
