"""Step policies: what one training step does with a minibatch, behind one narrow interface.

The trainer owns the loop (batches, checkpoints, status); a step policy owns the step. `PlainStep` is
update-and-validate (TextGrad's loop); candidate search (`textgrad_core.search`) is the other policy. Both reach
the run only through `StepContext`: rollouts, credit, optimizer, phases and the run log — never the trainer.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from textgrad_core.credit import CreditAssigner, CreditResult, ExampleTrace, canonical_traces
from textgrad_core.engines import EngineSet
from textgrad_core.engines.context import collect_calls
from textgrad_core.errors import ProviderError
from textgrad_core.optimizers.base import Optimizer, UpdateEvent
from textgrad_core.phases import PhaseClock
from textgrad_core.rollouts import EvalResult, Rollouts, summarize
from textgrad_core.runlog import JsonlLog
from textgrad_core.task import Example
from textgrad_core.variable import Parameter, ParameterSet, ParameterVersion



class RunRecorder:
    """Where a step writes what happened: parameter versions, feedback and events (nothing when there is no run dir)."""

    def __init__(self, run: Any = None):
        self.run = run

    @property
    def events(self) -> JsonlLog | None:
        return self.run.events if self.run else None

    def version(self, param: Parameter, entry: ParameterVersion, call_ids: list[str] = ()) -> None:
        if self.run:
            self.run.parameter_version(param, entry, list(call_ids))

    def event(self, record: dict[str, Any]) -> None:
        if self.run:
            self.run.events.write(record)

    def graph(self, step: int, trace: ExampleTrace) -> None:
        """The recorded graph of one example of the step (what the report draws)."""
        if self.run:
            self.run.graphs.write({"step": step, "example_id": trace.example_id, "graph": trace.graph.to_json(history=False)})

    def credit(self, step: int, credit: CreditResult, call_ids: list[str] = ()) -> None:
        """Every feedback item of a step (and the serialized trace of trace strategies), with the request ids of
        the step's credit calls (join with calls.jsonl)."""
        if not self.run:
            return
        ids = list(call_ids)
        for pid, items in credit.feedback.items():
            for item in items:
                self.run.gradients.write({"step": step, "param": pid, "example": item.example_id, "feedback": item.text,
                                          "strategy": credit.strategy, "credit_call_ids": ids})
        if credit.trace is not None:
            self.run.gradients.write({"step": step, "param": "*", "trace": credit.trace, "strategy": credit.strategy,
                                      "credit_call_ids": ids})


def optimizer_calls_for(param_id: str, calls: list[dict[str, Any]]) -> list[str]:
    """The request ids of the optimizer calls behind a parameter's new value: those tagged with its id
    (per-parameter optimizers), else every optimizer call of the step (a joint update)."""
    own = [c["request_id"] for c in calls if c["ok"] and c["tag"].endswith(f":{param_id}")]
    return own or [c["request_id"] for c in calls if c["ok"]]


@dataclass
class StepContext:
    """Everything a step policy may use: the services of the run, not the trainer."""

    rollouts: Rollouts
    params: ParameterSet
    credit: CreditAssigner
    optimizer: Optimizer
    engines: EngineSet
    clock: PhaseClock
    log: RunRecorder
    val_examples: list[Example]
    accept: str = "not_worse"

    def phase(self, name: str, **context: Any):
        return self.clock.phase(name, **context)

    async def forward_and_credit(self, step: int, batch: list[Example],
                                 only_errors: bool = False) -> tuple[EvalResult, CreditResult | None]:
        """Forward passes on the minibatch, then credit on the passes that completed (`only_errors`: no credit,
        and None, when every completed pass scored 1)."""
        with self.phase("forward", step=step):
            rollouts = await self.rollouts.run(batch, split="train")
        traces = [r.trace for r in rollouts if r.trace is not None]
        if only_errors and all(t.loss.score is not None and t.loss.score >= 1.0 for t in traces):
            return summarize(rollouts, "train"), None
        with self.phase("credit", step=step, split="train"), collect_calls() as calls:
            credit = await self._assign(traces, step)
        self.log.credit(step, credit, [c["request_id"] for c in calls if c["ok"]])
        return summarize(rollouts, "train"), credit

    async def _assign(self, traces: list[ExampleTrace], step: int) -> CreditResult:
        # Ids in credit prompts come from each graph's structure, never from the order concurrent ops finished in.
        traces = canonical_traces(traces)
        if traces:
            self.log.graph(step, traces[0])
        params = list(self.params)
        engine = self.engines["credit"]
        try:
            return await self.credit.assign(traces, params, engine)
        except ProviderError:
            pass
        # A credit call failed after its retries: assign per example so one example's failure loses only its feedback.
        results = await asyncio.gather(*(self._assign_one(t, params, engine, step) for t in traces))
        kept = [(t, r) for t, r in zip(traces, results) if r is not None]
        if not kept:
            return CreditResult(strategy=self.credit.name, kind=self.credit.kind,
                                details={"failed_examples": [t.example_id for t in traces]})
        merged = kept[0][1]
        for _, r in kept[1:]:
            for pid, items in r.feedback.items():
                merged.feedback.setdefault(pid, []).extend(items)
            merged.scores.update(r.scores)
            if r.trace:
                merged.trace = "\n\n".join(x for x in (merged.trace, r.trace) if x)
        merged.details = {**merged.details, "failed_examples": [t.example_id for t, r in zip(traces, results) if r is None]}
        return merged

    async def _assign_one(self, trace: ExampleTrace, params: list[Parameter], engine: Any, step: int) -> CreditResult | None:
        try:
            return await self.credit.assign([trace], params, engine)
        except ProviderError as exc:
            self.log.event({"kind": "credit_failed", "step": step, "example": trace.example_id, "error": str(exc)})
            return None

    async def update(self, step: int, credit: CreditResult) -> list[UpdateEvent]:
        """The optimizer's step; a provider failure leaves every parameter as it was (and is an event)."""
        before = self.params.versions()
        try:
            with self.phase("optimizer", step=step), collect_calls() as calls:
                updates = await self.optimizer.step(list(self.params), credit, self.engines["optimizer"], step,
                                                    events=self.log.events)
        except ProviderError as exc:
            self.revert_to(before, step, "revert: the optimizer call failed after retries")
            self.log.event({"kind": "optimizer_failed", "step": step, "error": str(exc)})
            return []
        for p in self.params:
            for entry in p.history:
                if entry.version > before[p.id]:
                    self.log.version(p, entry, optimizer_calls_for(p.id, calls))
        return updates

    async def validate(self, step: int, values: dict[str, Any] | None = None) -> EvalResult:
        with self.phase("validation", step=step, split="val"):
            return await self.rollouts.evaluate(self.val_examples, "val", values)

    def accepts(self, candidate: EvalResult, incumbent: EvalResult) -> tuple[bool, dict[str, Any]]:
        """The acceptance rule on the examples both evaluations scored; the comparison is returned for the record."""
        new, old, left_out = candidate.compare(incumbent)
        ok = bool(candidate.scores) and (new >= old if self.accept == "not_worse" else new > old)
        return ok, {"candidate": round(new, 4), "incumbent": round(old, 4), "compared_on": len(
            set(candidate.scores) & set(incumbent.scores)), "left_out": left_out}

    def apply_values(self, values: dict[str, Any], step: int, reason: str) -> list[UpdateEvent]:
        """Give the parameters a candidate's values through Parameter.update (each change a logged version)."""
        events = []
        for param in self.params:
            if param.value != values[param.id]:
                before = param.version
                entry = param.update(values[param.id], step, reason=reason)
                self.log.version(param, entry)
                events.append(UpdateEvent(param.id, True, before, entry.version, reason=entry.reason))
        return events

    def revert_to(self, versions: dict[str, int], step: int, reason: str) -> list[str]:
        """Restore every parameter whose version moved since `versions`; the reverts are logged as new versions."""
        reverted = []
        for p in self.params:
            if p.version != versions[p.id]:
                self.log.version(p, p.revert_to(versions[p.id], step, reason=reason))
                reverted.append(p.id)
        return reverted


@runtime_checkable
class StepPolicy(Protocol):
    """One training step on a minibatch; holds its own state (the incumbent) for checkpoints."""

    name: str

    def start(self, ctx: StepContext, initial: EvalResult) -> None: ...

    async def step(self, ctx: StepContext, step: int, batch: list[Example]) -> dict[str, Any]: ...

    @property
    def best(self) -> EvalResult: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


class PlainStep:
    """Forward, credit, update, then validate every `val_every` steps (0: never) and revert what got worse."""

    name = "plain"

    def __init__(self, val_every: int = 1, update_on: str = "always"):
        self.val_every = val_every
        self.update_on = update_on  # "errors": a batch the system got all right changes nothing (Trace's protocol)
        self._best: EvalResult | None = None
        self._validated: dict[str, int] = {}  # parameter versions of the last validated incumbent

    @property
    def best(self) -> EvalResult:
        assert self._best is not None, "call start() first"
        return self._best

    def start(self, ctx: StepContext, initial: EvalResult) -> None:
        self._best = initial
        self._validated = ctx.params.versions()

    async def step(self, ctx: StepContext, step: int, batch: list[Example]) -> dict[str, Any]:
        train, credit = await ctx.forward_and_credit(step, batch, only_errors=self.update_on == "errors")
        updates = await ctx.update(step, credit) if credit is not None else []
        changed = ctx.params.versions() != self._validated
        record: dict[str, Any] = {"step": step, "train_score": round(train.score, 4), "n_train_scored": train.n}
        val: EvalResult | None = None
        if not changed:
            decision = "no change"
        elif not self.val_every or step % self.val_every:
            decision = "not validated"
        else:
            val = await ctx.validate(step)
            ok, comparison = ctx.accepts(val, self.best)
            record["comparison"] = comparison
            if ok:
                decision, self._best, self._validated = "accepted", val, ctx.params.versions()
            else:
                rule = "<" if ctx.accept == "not_worse" else "is not above"
                why = (f"validation {comparison['candidate']:.3f} {rule} best {comparison['incumbent']:.3f}"
                       if val.scores else "every validation pass failed")
                ctx.revert_to(self._validated, step, f"revert: {why}")
                decision = "reverted"
        record.update({
            "val_score": round(val.score if val is not None else self.best.score, 4),
            "best_val": round(self.best.score, 4), "decision": decision,
            "updates": [u.__dict__ for u in updates], "batch": [e.id for e in batch],
            "credit": credit.strategy if credit is not None else None,
            "credit_details": credit.details if credit is not None else {"skipped": "every example scored 1"},
            "failed": {"train": train.failed, "val": val.failed if val is not None else []},
        })
        return record

    def state(self) -> dict[str, Any]:
        return {"best": self.best.state(), "validated": self._validated}

    def load_state(self, state: dict[str, Any]) -> None:
        self._best = EvalResult.from_state(state["best"])
        self._validated = {k: int(v) for k, v in state["validated"].items()}
