"""`search=gepa`: GEPA's loop (reflective mutation, Pareto selection, merge) as a step policy.

One step is one GEPA iteration, following GEPA's published engine (gepa-ai/gepa, `core/engine.py` and its
proposers):

1. *Merge*, when one is due (a mutation was accepted on the previous step and fewer than
   `max_merge_invocations` merges were accepted): two pickable programs with a common ancestor are combined
   (`gepa_pool.find_merge`), scored on a subsample of validation examples, and kept when their sum there is at
   least the better parent's; either way the step ends (the minibatch goes unused). With no merge to try, 2.
2. *Reflective mutation*: a parent is sampled by GEPA's rule (`gepa_pool.select_parent`), run on the step's
   minibatch with credit for ONE component (its round-robin turn); a minibatch it gets entirely right changes
   nothing (`skip_perfect`). The optimizer proposes one new value for that component, at its own temperature;
   the child runs on the same minibatch and enters the pool only when its score sum there is strictly greater
   than the parent's; then it gets a full validation pass.
Every example evaluation (minibatch, subsample, validation, the initial one included) is a metric call; once
`max_metric_calls` are spent, a step proposes nothing and returns the decision "budget". The parameters hold the
program with the best mean validation score, changed only through `Parameter.update` (each change a logged
version). Minibatches are the trainer's (`trainer.batch_size`, 3 as in GEPA); the trainer's `accept` rule does
not apply (GEPA's rules above do).
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from textgrad_core.errors import ConfigError, ProviderError
from textgrad_core.gepa_pool import (MergeLog, Program, best_program, find_merge, merge_subsample, select_parent,
                                     selection_weights)
from textgrad_core.optimizers.base import ProposingOptimizer, UpdateEvent
from textgrad_core.rollouts import EvalResult, summarize
from textgrad_core.steps import StepContext
from textgrad_core.task import Example
from textgrad_core.variable import ParameterSet


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _minibatch_sums(child: EvalResult, parent: EvalResult) -> tuple[float, float, int]:
    """Score sums of child and parent on the minibatch examples both scored (failed passes are left out)."""
    common = sorted(set(child.scores) & set(parent.scores))
    return sum(child.scores[e] for e in common), sum(parent.scores[e] for e in common), len(common)


def _check_count(key: str, value: Any, alternative: str = "") -> None:
    """A count option must be an integer of at least 1 (one line naming the key otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"search.{key}={value!r}: must be an integer of at least 1{alternative}.")


def _shown(program: Program) -> float:
    """A program's mean validation score for records (0.0, not -inf, when it has none: records are JSON)."""
    return round(program.mean, 4) if program.scores else 0.0


class GEPASearch:
    """GEPA as a step policy: a pool of programs, one reflective mutation (or merge) per step, a metric-call budget."""

    name = "gepa"

    def __init__(self, optimizer: Any, max_metric_calls: int | None = None, merge: bool = False,
                 max_merge_invocations: int = 5, merge_subsample_size: int = 5, merge_val_overlap_floor: int = 5,
                 skip_perfect: bool = True, seed: int = 0):
        if not isinstance(optimizer, ProposingOptimizer):
            raise ConfigError(f"optimizer={getattr(optimizer, 'name', optimizer)} cannot be used with search=gepa: it "
                              "has no propose() method. Use an optimizer that proposes (tgd, joint, opro).")
        if max_metric_calls is not None:
            _check_count("max_metric_calls", max_metric_calls, " or null for no budget")
        for key, value in (("max_merge_invocations", max_merge_invocations),
                           ("merge_subsample_size", merge_subsample_size),
                           ("merge_val_overlap_floor", merge_val_overlap_floor)):
            _check_count(key, value)
        self.optimizer = optimizer
        self.max_metric_calls = None if max_metric_calls is None else int(max_metric_calls)
        self.merge = bool(merge)
        self.max_merge_invocations = int(max_merge_invocations)
        self.merge_subsample_size = int(merge_subsample_size)
        self.merge_val_overlap_floor = int(merge_val_overlap_floor)
        self.skip_perfect = bool(skip_perfect)
        self.rng = random.Random(seed)
        self.programs: list[Program] = []
        self.components: list[str] = []
        self.metric_calls = 0
        self.merges_due = 0
        self.merges_accepted = 0
        self.found_new_program = False  # the previous step added a mutation: a merge may be tried now
        self.merge_log = MergeLog()
        self.applied = 0  # the program whose values the parameters hold

    # ---- state ------------------------------------------------------------------------------------------------
    def start(self, ctx: StepContext, initial: EvalResult) -> None:
        """Begin from the current values (the seed program), scored by the trainer's initial validation pass."""
        self.components = [p.id for p in ctx.params]
        self.programs = [Program(0, ctx.params.values(), scores=dict(initial.scores))]
        self.metric_calls = len(initial.scores) + len(initial.failed) + len(initial.unscored)
        self.applied = 0

    def state(self) -> dict[str, Any]:
        """Pool, lineage, round-robin positions, budget, merge schedule and the sampling RNG, as JSON."""
        return {"selection": self.name, "programs": [p.state() for p in self.programs], "components": self.components,
                "metric_calls": self.metric_calls, "merges_due": self.merges_due,
                "merges_accepted": self.merges_accepted, "found_new_program": self.found_new_program,
                "merge_log": self.merge_log.state(), "applied": self.applied, "rng": _rng_state(self.rng)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.programs = [Program.from_state(s) for s in state["programs"]]
        self.components = list(state["components"])
        self.metric_calls = int(state["metric_calls"])
        self.merges_due, self.merges_accepted = int(state["merges_due"]), int(state["merges_accepted"])
        self.found_new_program = bool(state["found_new_program"])
        self.merge_log = MergeLog.from_state(state["merge_log"])
        self.applied = int(state["applied"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))

    def describe(self) -> dict[str, Any]:
        """The options of the search, for the run summary."""
        return {"selection": self.name, "max_metric_calls": self.max_metric_calls, "merge": self.merge,
                "max_merge_invocations": self.max_merge_invocations, "merge_subsample_size": self.merge_subsample_size,
                "merge_val_overlap_floor": self.merge_val_overlap_floor, "skip_perfect": self.skip_perfect}

    @property
    def best(self) -> EvalResult:
        assert self.programs, "call start() first"
        return EvalResult("val", dict(best_program(self.programs).scores))

    @property
    def budget_left(self) -> int | None:
        return None if self.max_metric_calls is None else max(0, self.max_metric_calls - self.metric_calls)

    # ---- one step -----------------------------------------------------------------------------------------------
    async def step(self, ctx: StepContext, step: int, batch: list[Example]) -> dict[str, Any]:
        """One GEPA iteration on this minibatch: a due merge, else one reflective mutation; or nothing (budget)."""
        assert self.programs, "call start() first"
        if self.budget_left == 0:
            return self._record(ctx, step, batch, "budget", {"reason": f"{self.metric_calls} metric calls spent "
                                                                       f"of max_metric_calls={self.max_metric_calls}"})
        if self.merge and self.merges_due > 0 and self.found_new_program:
            self.found_new_program = False
            record = await self._merge_step(ctx, step, batch)
            if record is not None:
                return record
        self.found_new_program = False
        return await self._mutation_step(ctx, step, batch)

    async def _mutation_step(self, ctx: StepContext, step: int, batch: list[Example]) -> dict[str, Any]:
        parent = select_parent(self.programs, self.rng)
        component = self.components[parent.next_component]
        param = ctx.params[component]
        only = replace(ctx, params=ParameterSet([param]))  # credit for the component whose turn it is, only
        info: dict[str, Any] = {"kind": "mutation", "parent": parent.id, "component": component}
        proposal = None
        # The parent's values are on the parameters only inside this block; the record (which may apply the best
        # program through Parameter.update) is written after it.
        with ctx.rollouts.using_values(parent.values):
            train, credit = await only.forward_and_credit(step, batch, only_errors=self.skip_perfect)
            self.metric_calls += len(batch)
            if credit is None:
                info["skipped"] = ("every minibatch example scored 1" if train.scores
                                   else "no minibatch pass completed with a score")
            else:
                parent.next_component = (parent.next_component + 1) % len(self.components)
                try:
                    with ctx.phase("optimizer", step=step):
                        proposal = await self.optimizer.propose([param], credit, ctx.engines["optimizer"], step,
                                                                events=ctx.log.events)
                except ProviderError as exc:
                    ctx.log.event({"kind": "optimizer_failed", "step": step, "error": str(exc)})
                    info["skipped"] = "the optimizer call failed after retries"
        if proposal is None:
            return self._record(ctx, step, batch, "no change", info, train, credit)
        info["unchanged"] = [u.__dict__ for u in proposal.unchanged]
        if component not in proposal.values or proposal.values[component] == parent.values[component]:
            info["skipped"] = "no new value proposed"
            return self._record(ctx, step, batch, "no change", info, train, credit)
        values = {**parent.values, component: proposal.values[component]}
        with ctx.phase("forward", step=step, split="train"), ctx.rollouts.using_values(values):
            child_train = summarize(await ctx.rollouts.run(batch, split="train"), "train")
        self.metric_calls += len(batch)
        new, old, n = _minibatch_sums(child_train, train)
        info["minibatch"] = {"child": round(new, 4), "parent": round(old, 4), "compared_on": n,
                             "failed": child_train.failed}
        if not n or new <= old:  # GEPA's acceptance: strictly better on the same minibatch
            return self._record(ctx, step, batch, "rejected", info, train, credit)
        child = await self._admit(ctx, step, values, [parent], "mutation")
        info["child"] = child.id
        if self.merge and self.merges_accepted < self.max_merge_invocations:
            self.merges_due += 1
        self.found_new_program = True
        return self._record(ctx, step, batch, "accepted", info, train, credit, child)

    async def _merge_step(self, ctx: StepContext, step: int, batch: list[Example]) -> dict[str, Any] | None:
        """Try GEPA's merge; None when no pair qualifies (the step goes on to a mutation)."""
        found = find_merge(self.programs, self.components, self.merge_log, self.rng, self.merge_val_overlap_floor)
        if found is None:
            return None
        values, i, j, k = found
        self.merge_log.triplets.append((i, j, k))
        a, b = self.programs[i], self.programs[j]
        ids = merge_subsample(a.scores, b.scores, self.merge_subsample_size, self.rng)
        if not ids:
            return None
        by_id = {e.id: e for e in ctx.val_examples}
        unique = [by_id[e] for e in sorted(set(ids)) if e in by_id]  # (a resumed run may validate on fewer)
        with ctx.phase("validation", step=step, split="val"):
            on_subsample = await ctx.rollouts.evaluate(unique, "val", values)
        self.metric_calls += len(unique)
        scored = [e for e in ids if e in on_subsample.scores]
        new = sum(on_subsample.scores[e] for e in scored)
        sums = [sum(p.scores[e] for e in scored) for p in (a, b)]
        info: dict[str, Any] = {"kind": "merge", "parents": [a.id, b.id], "ancestor": self.programs[k].id,
                                "subsample": ids, "merged": round(new, 4), "parent_sums": [round(s, 4) for s in sums]}
        if not scored or new < max(sums):  # GEPA keeps a merge at least as good as the better parent here
            return self._record(ctx, step, batch, "rejected", info)
        child = await self._admit(ctx, step, values, [a, b], "merge")
        info["child"] = child.id
        self.merges_due -= 1
        self.merges_accepted += 1
        return self._record(ctx, step, batch, "accepted", info, child=child)

    async def _admit(self, ctx: StepContext, step: int, values: dict[str, Any], parents: list[Program],
                     origin: str) -> Program:
        """Full validation pass, then the program joins the pool (round-robin position: the parents' furthest)."""
        val = await ctx.validate(step, values)
        self.metric_calls += len(ctx.val_examples)
        child = Program(len(self.programs), dict(values), [p.index for p in parents], origin, step, dict(val.scores),
                        max(p.next_component for p in parents))
        self.programs.append(child)
        return child

    # ---- the parameters and the record ---------------------------------------------------------------------
    def _apply(self, ctx: StepContext, step: int) -> list[UpdateEvent]:
        """Give the parameters the best program's values through Parameter.update; each change a logged version."""
        new, old = best_program(self.programs), self.programs[self.applied]
        if new is old:
            return []
        events = ctx.apply_values(new.values, step, reason=(
            f"search (gepa): program {new.id}, validation {new.mean:.3f} (was {old.id}, {old.mean:.3f})"))
        self.applied = new.index
        return events

    def _record(self, ctx: StepContext, step: int, batch: list[Example], decision: str, info: dict[str, Any],
                train: EvalResult | None = None, credit: Any = None, child: Program | None = None) -> dict[str, Any]:
        updates = self._apply(ctx, step)
        best = best_program(self.programs)
        return {
            "step": step, "train_score": round(train.score, 4) if train is not None else None,
            "n_train_scored": train.n if train is not None else 0,
            "val_score": _shown(child if child is not None else best), "best_val": _shown(best),
            "decision": decision, "updates": [u.__dict__ for u in updates], "batch": [e.id for e in batch],
            "credit": getattr(credit, "strategy", None), "credit_details": getattr(credit, "details", {}),
            "failed": {"train": train.failed if train is not None else []},
            "search": {"selection": self.name, **info, "metric_calls": self.metric_calls,
                       "budget_left": self.budget_left, "pool": [p.row() for p in self.programs],
                       "pickable": {f"p{i}": w for i, w in selection_weights(self.programs).items()},
                       "best": best.id},
        }
