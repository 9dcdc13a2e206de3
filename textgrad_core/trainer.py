"""The training loop: minibatches, one step policy per step, checkpoints, resume, statuses and the final test.

The trainer owns the loop and the run's bookkeeping; what a step does belongs to its step policy
(`textgrad_core.steps.PlainStep`, or candidate search). Every run ends with a status in its summary:
`completed`, `stopped` (budget, failure share, interrupt) or `failed` (with the error line).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from textgrad_core import checkpoint as ckpt
from textgrad_core.credit import CreditAssigner
from textgrad_core.engines import EngineSet, LLMReply, Usage
from textgrad_core.engines.context import call_context
from textgrad_core.engines.sim import SIM_NOTICE
from textgrad_core.engines.sim_check import sim_answer_check
from textgrad_core.errors import BudgetExceeded, TextgradError
from textgrad_core.optimizers.base import Optimizer
from textgrad_core.phases import PhaseClock
from textgrad_core.rollouts import EvalResult, FailureCount, FailureShareExceeded, Rollouts
from textgrad_core.rundir import RunDir
from textgrad_core.steps import PlainStep, RunRecorder, StepContext, StepPolicy
from textgrad_core.task import Example, Splits, Task
from textgrad_core.variable import ParameterSet



class TrainerConfig(BaseModel):
    """How long to train, in which order, and how to accept updates."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=3, ge=1)
    max_steps: int | None = Field(default=None, ge=0)
    val_size: int | None = Field(default=None, ge=1)  # evaluate on the first n validation examples (None: all)
    test_size: int | None = Field(default=None, ge=1)
    seed: int = 0
    accept: Literal["not_worse", "better"] = "not_worse"  # not_worse: TextGrad's rule (ties kept)
    eval_test: bool = True
    progress: bool = True
    shuffle: bool = True  # False: the training split in its stored order, every epoch
    val_every: int = Field(default=1, ge=0)  # validate (and gate) every k steps; 0: never
    max_failed_fraction: float = Field(default=0.25, ge=0.0, le=1.0)
    # errors: credit and update only when some example of the batch scored below 1 (Trace's online protocol)
    update_on: Literal["always", "errors"] = "always"


class Trainer:
    """Optimizes a task's parameters with an injected credit strategy, optimizer and step policy."""

    def __init__(self, task: Task, engines: EngineSet, credit: CreditAssigner, optimizer: Optimizer,
                 config: TrainerConfig | None = None, run: RunDir | None = None, splits: Splits | None = None,
                 on_step: Callable[[dict[str, Any]], None] | None = None, search: StepPolicy | None = None,
                 on_eval: Callable[[str, int, int], None] | None = None):
        self.task = task
        self.engines = engines
        self.credit = credit
        self.optimizer = optimizer
        self.config = config or TrainerConfig()
        self.policy: StepPolicy = search if search is not None else PlainStep(self.config.val_every, self.config.update_on)
        self.search = search
        self.run = run
        if run is not None:  # an optimizer or credit state no checkpoint can hold is reported before any call is paid
            ckpt.object_state(optimizer), ckpt.object_state(credit)
        self.splits = splits or task.checked_splits()
        self.params = ParameterSet(task.initial_parameters())
        self.clock = PhaseClock(engines.ledger)
        self.failures = FailureCount(self.config.max_failed_fraction)
        self.log = RunRecorder(run)
        self.rollouts = Rollouts(task, engines, self.params, self.failures, on_failure=self.log.event,
                                 on_progress=on_eval)
        self.on_step = on_step
        self.history: list[dict[str, Any]] = []
        self.initial: EvalResult | None = None
        self.initial_values: dict[str, Any] = self.params.values()
        self.completed_steps = 0
        self._wall_before = 0.0  # wall time of earlier attempts of a resumed run

    @property
    def phases(self):
        return self.clock.stats

    def context(self) -> StepContext:
        return StepContext(self.rollouts, self.params, self.credit, self.optimizer, self.engines, self.clock,
                           self.log, self.val_examples(), self.config.accept)

    # ---- splits and batches -----------------------------------------------------------------------
    def val_examples(self) -> list[Example]:
        """The validation examples used to accept updates."""
        return self.splits.val[: self.config.val_size] if self.config.val_size else self.splits.val

    def test_examples(self) -> list[Example]:
        return self.splits.test[: self.config.test_size] if self.config.test_size else self.splits.test

    def batches(self) -> list[list[Example]]:
        """The minibatches of every epoch: shuffled with the run's seed, or in stored order (shuffle=false)."""
        rng = random.Random(self.config.seed)
        out: list[list[Example]] = []
        for _ in range(self.config.epochs):
            order = list(self.splits.train)
            if self.config.shuffle:
                rng.shuffle(order)
            out += [order[i:i + self.config.batch_size] for i in range(0, len(order), self.config.batch_size)]
        return out[: self.config.max_steps] if self.config.max_steps is not None else out

    # ---- checkpoint and resume --------------------------------------------------------------------
    def state(self, wall_s: float) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly where this one is now."""
        return {"format": ckpt.FORMAT, "step": self.completed_steps, "simulated": self.engines.simulated,
                "initial": self.initial.state() if self.initial else None, "initial_values": self.initial_values,
                "parameters": ckpt.parameters_state(self.params), "policy": self.policy.state(),
                "optimizer": ckpt.object_state(self.optimizer), "credit": ckpt.object_state(self.credit),
                "history": self.history, "phases": self.clock.state(), "failures": self.failures.state(),
                "ledger": self.engines.ledger.state(), "wall_s": wall_s,
                "logs": self.run.offsets() if self.run else {}}

    def load_state(self, state: dict[str, Any], calls_after: list[dict[str, Any]] = ()) -> None:
        """Continue from a checkpoint written by `state` (the run log is cut back to it by RunDir).

        `calls_after` are the call records logged after the checkpoint: they were paid (their step did not
        complete), so they count toward the usage and the budget of the resumed run.
        """
        ckpt.check_format(state)
        ckpt.restore_parameters(self.params, state["parameters"])
        self.initial = EvalResult.from_state(state["initial"])
        self.initial_values = state["initial_values"]
        self.policy.start(self.context(), self.initial)
        self.policy.load_state(state["policy"])
        ckpt.restore_object(self.optimizer, state["optimizer"])
        ckpt.restore_object(self.credit, state["credit"])
        self.history = list(state["history"])
        self.clock.load_state(state["phases"])
        self.failures.load_state(state["failures"])
        self.engines.ledger.load_state(state["ledger"])
        for record in calls_after:
            self._count_logged_call(record)
        self.completed_steps = int(state["step"])
        self._wall_before = float(state["wall_s"])

    def _count_logged_call(self, record: dict[str, Any]) -> None:
        phase = record.get("phase") if record.get("phase") in self.clock.stats else None
        if record.get("error") is not None:
            self.engines.ledger.record_error(record["role"], record["provider"], record["model"], phase)
            return
        reply = LLMReply(text=record.get("reply") or "", model=record["model"], provider=record["provider"],
                         usage=Usage.model_validate(record.get("usage") or {}), cost_usd=record.get("cost_usd") or 0.0,
                         cache_hit=bool(record.get("cache_hit")), latency_s=record.get("latency_s") or 0.0)
        self.engines.ledger.record(record["role"], reply, phase)
        if phase is not None:
            self.clock.stats[phase].usage.add_reply(reply)

    def _checkpoint(self, start: float) -> None:
        if self.run:
            self.run.checkpoint(self.state(self._wall_before + time.perf_counter() - start))

    # ---- the loop -----------------------------------------------------------------------------
    async def train(self) -> dict[str, Any]:
        """Run every remaining step, then evaluate on test; returns the summary (also written when there is a run)."""
        with call_context(run_id=self.run.run_id if self.run else None):  # on every call record of the run
            return await self._train()

    async def _train(self) -> dict[str, Any]:
        start = time.perf_counter()
        stop: tuple[str, str] | None = None  # (status, reason)
        error = None
        test = initial_test = None
        final_val: float | None = None
        try:
            if self.initial is None:
                await self._initial_evaluation()
                self._checkpoint(start)
            batches = self.batches()
            for step, batch in enumerate(batches, 1):
                if step <= self.completed_steps:
                    continue
                before = self.params.versions()
                try:
                    record = await self.policy.step(self.context(), step, batch)
                except BaseException as exc:
                    # An update the step had not finished validating is never left in place.
                    reverted = self.context().revert_to(before, step, f"revert: {_why_stopped(exc)} before the "
                                                                      "step finished")
                    self.log.event({"kind": "step_interrupted", "step": step, "reason": _why_stopped(exc),
                                    "reverted": reverted})
                    raise
                self.completed_steps = step
                record["n_failed"] = sum(len(v) for v in record.get("failed", {}).values())
                self._emit(record)
                self._checkpoint(start)
            final_val = await self._final_validation()
            if self.config.eval_test:
                initial_test, test = await self._test()
        except BudgetExceeded as exc:
            stop = ("stopped", str(exc))
        except FailureShareExceeded as exc:
            stop = ("stopped", str(exc))
        except (KeyboardInterrupt, asyncio.CancelledError):
            self._finish(("stopped", "interrupted"), None, start, None, None, None)
            raise
        except TextgradError as exc:
            stop, error = ("failed", str(exc)), str(exc)
        except Exception as exc:  # a bug: the summary says so, then the traceback follows
            self._finish(("failed", f"{type(exc).__name__}: {exc}"), f"{type(exc).__name__}: {exc}", start, None,
                         None, None)
            raise
        if stop is not None:
            if self.run:
                self.run.events.write({"kind": "run_stopped", "status": stop[0], "reason": stop[1]})
            return self._finish(stop, error, start, None, None, None)
        return self._finish(("completed", None), None, start, final_val, initial_test, test)

    async def _initial_evaluation(self) -> None:
        if self.run:
            for p in self.params:
                self.log.version(p, p.history[0])
        with self.clock.phase("validation", step=0, split="val"):
            self.initial = await self.rollouts.evaluate(self.val_examples(), "val")
        if self.engines.simulated and self.initial.scores and self.initial.score == 0.0:
            # A parser that never reads the simulator's answers scores 0.000 without a word: say so at once.
            warning = await sim_answer_check(self.task, self.splits, self.engines)
            if warning:
                logging.getLogger(__name__).warning(warning)
                self.log.event({"kind": "sim_answer_format", "warning": warning})
        self.policy.start(self.context(), self.initial)
        self._emit({"step": 0, "val_score": round(self.initial.score, 4), "best_val": round(self.initial.score, 4),
                    "decision": "initial", "n_val_scored": self.initial.n, "n_failed": len(self.initial.failed),
                    "failed": {"val": self.initial.failed}})

    async def _final_validation(self) -> float:
        """The validation score of the final values: the incumbent's, or a fresh evaluation after unvalidated steps."""
        last = self.history[-1]["decision"] if self.history else "initial"
        if last != "not validated":
            return self.policy.best.score
        with self.clock.phase("validation", step=self.completed_steps, split="val"):
            return (await self.rollouts.evaluate(self.val_examples(), "val")).score

    async def _test(self) -> tuple[float, float]:
        with self.clock.phase("test", step=self.completed_steps, split="test"):
            test = (await self.rollouts.evaluate(self.test_examples(), "test")).score
            if self.params.values() == self.initial_values:
                return test, test  # nothing was accepted: the same prompts would be scored twice
            initial = (await self.rollouts.evaluate(self.test_examples(), "test", self.initial_values)).score
        return initial, test

    def _emit(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.run:
            self.run.metric(record)
        if self.on_step:
            self.on_step(record)

    # ---- the summary --------------------------------------------------------------------------
    def _finish(self, status: tuple[str, str | None], error: str | None, start: float, final_val: float | None,
                initial_test: float | None, test: float | None) -> dict[str, Any]:
        summary = self.summary(status[0], status[1], error, self._wall_before + time.perf_counter() - start,
                               final_val, initial_test, test)
        if self.run:
            self.run.summary(summary)
        return summary

    def summary(self, status: str, stop_reason: str | None, error: str | None, wall_s: float,
                final_val: float | None = None, initial_test: float | None = None,
                test: float | None = None) -> dict[str, Any]:
        """The run's summary as it stands: status, scores, usage and cost so far, per phase and role."""
        total = self.engines.ledger.total()
        unpriced = self.engines.ledger.unpriced_models()
        initial_val = self.initial.score if self.initial else None
        best = self.policy.best.score if self.initial else None
        return {
            "status": status,
            "stop_reason": stop_reason,
            "error": error,
            "run_id": self.run.run_id if self.run else None,
            "task": self.task.name,
            "task_info": self.task.info(),  # the protocol (scorer, prompts, format) the scores were computed under
            "simulated": self.engines.simulated,
            "notice": SIM_NOTICE if self.engines.simulated else None,
            "engines": self.engines.describe(),
            "credit": self.credit.name,
            "optimizer": self.optimizer.name,
            "search": self.search.describe() if self.search is not None else None,
            "splits": {"train": len(self.splits.train), "val": len(self.val_examples()),
                       "test": len(self.test_examples())},
            "steps": self.completed_steps,
            "val": {"initial": _round(initial_val), "final": _round(final_val if final_val is not None else best)},
            "test": {"initial": _round(initial_test), "final": _round(test)},
            "usage": {"calls": total.calls - total.cache_hits, "cache_hits": total.cache_hits,
                      "input_tokens": total.input_tokens, "output_tokens": total.output_tokens,
                      "cost_usd": round(total.cost_usd, 6), "unpriced_models": unpriced},
            "phases": self.clock.rows(),
            "by_role": {r: u.model_dump() for r, u in self.engines.ledger.by_role().items()},
            "failures": {"example_passes": self.failures.passes, "failed_passes": self.failures.failed,
                         "calls": self.engines.ledger.faults()},
            "wall_s": round(wall_s, 3),
            "parameters": {p.id: {"version": p.version, "value": p.value} for p in self.params},
            "run_dir": str(self.run.path) if self.run else None,
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _why_stopped(exc: BaseException) -> str:
    if isinstance(exc, BudgetExceeded):
        return "budget exhausted"
    if isinstance(exc, FailureShareExceeded):
        return "too many failed passes"
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return "interrupted"
    return f"error ({type(exc).__name__})"
