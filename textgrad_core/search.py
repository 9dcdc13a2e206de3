"""Candidate search around any proposing optimizer: n candidates per step, scored on validation, greedy/beam/Pareto pool.

Every candidate is a full assignment of parameter values. Candidates are evaluated on the held-out validation
split (never test) by putting their values on the parameters for the duration of the evaluation only; the
parameters change for good only through `Parameter.update`, when a candidate becomes the incumbent, and a
candidate whose mean validation score is below the incumbent's never does.
"""
from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

from textgrad_core.errors import ConfigError
from textgrad_core.optimizers.base import ProposingOptimizer, UpdateEvent
from textgrad_core.rollouts import EvalResult
from textgrad_core.steps import StepContext
from textgrad_core.task import Example

SELECTIONS = ("greedy", "beam", "pareto")


@dataclass(eq=False)
class Candidate:
    """One assignment of values to every parameter, and its validation score per example once evaluated."""

    id: str
    values: dict[str, Any]
    parent: str | None = None
    origin: str = "proposal"  # "initial", "proposal" or "merge"
    step: int = 0
    scores: dict[str, float] | None = None

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0

    def changes(self, base: dict[str, Any]) -> dict[str, Any]:
        """The values that differ from `base`."""
        return {pid: v for pid, v in self.values.items() if base.get(pid) != v}

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "parent": self.parent, "origin": self.origin, "step": self.step,
                "val": None if self.scores is None else round(self.mean, 4)}


def pareto_front(score_table: dict[str, dict[str, float]]) -> set[str]:
    """The non-dominated candidates: no other one is at least as good on every example and better on one.

    A score missing for an example counts as lower than any score.
    """
    examples = sorted({e for row in score_table.values() for e in row})
    low = float("-inf")
    vectors = {c: [row.get(e, low) for e in examples] for c, row in score_table.items()}

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return {c for c, v in vectors.items() if not any(dominates(w, v) for d, w in vectors.items() if d != c)}


def wins(score_table: dict[str, dict[str, float]]) -> dict[str, int]:
    """For each candidate, on how many examples it reaches the best score (ties count for each tied candidate)."""
    counts = {c: 0 for c in score_table}
    examples = {e for row in score_table.values() for e in row}
    for e in examples:
        top = max(row[e] for row in score_table.values() if e in row)
        for c, row in score_table.items():
            if e in row and row[e] == top:
                counts[c] += 1
    return counts


def _key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_state(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


class CandidateSearch:
    """Proposes `n_candidates` per parent per step with a proposing optimizer and keeps a pool by `selection`.

    - greedy: the pool is the incumbent; the best candidate replaces it when not worse on validation.
    - beam: the pool keeps the `beam_width` best candidates by mean validation score; each is a parent every step.
    - pareto: Pareto-front selection weighted by wins, GEPA-inspired: the pool keeps the candidates that reach the
      best score on at least one validation example and that no other candidate dominates on the whole score
      vector (plus the incumbent); one parent per step, sampled in proportion to the examples it wins (ties count
      for each). It is not GEPA's rule: GEPA also drops programs whose winning examples are all won by others, and
      proposes one component per step with strict minibatch acceptance (that loop is `textgrad_core.gepa`,
      `search=gepa`).
    `merge` adds, once per step, the candidate that combines two pool candidates changing disjoint parameters of
    the incumbent (not GEPA's merge around a common ancestor).
    `minibatch_gate` evaluates a candidate on validation only if it is not worse than its parent on the step's
    minibatch (ties pass, where GEPA requires strictly better).
    """

    def __init__(self, optimizer: Any, selection: str = "greedy", n_candidates: int = 4, temperature: float = 0.7,
                 beam_width: int = 3, merge: bool = False, minibatch_gate: bool = False, seed: int = 0):
        if selection not in SELECTIONS:
            raise ConfigError(f"Unknown search selection '{selection}'. Known: {', '.join(SELECTIONS)} (or search=none).")
        if not isinstance(optimizer, ProposingOptimizer):
            raise ConfigError(f"optimizer={getattr(optimizer, 'name', optimizer)} cannot be used with search: it has no "
                              "propose() method. Use search=none, or an optimizer that proposes (tgd, joint, opro).")
        if n_candidates < 1 or beam_width < 1:
            raise ConfigError("search.n_candidates and search.beam_width must be at least 1.")
        self.optimizer = optimizer
        self.selection = selection
        self.n_candidates = n_candidates
        self.temperature = temperature
        self.beam_width = beam_width
        self.merge = merge
        self.minibatch_gate = minibatch_gate
        self.rng = random.Random(seed)
        self.pool: list[Candidate] = []
        self.incumbent: Candidate | None = None
        self._seen: set[str] = set()
        self._count = 0

    @property
    def name(self) -> str:
        return self.selection

    # ---- state ------------------------------------------------------------------------------
    def start(self, ctx: StepContext, initial: EvalResult) -> None:
        """Begin from the current parameter values and their initial validation scores."""
        self.incumbent = self._new(ctx.params.values(), None, "initial", 0)
        self.incumbent.scores = dict(initial.scores)
        self.pool = [self.incumbent]

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs: pool, incumbent, seen proposals, counter and the sampling RNG."""
        return {"selection": self.selection, "incumbent": self.incumbent.id if self.incumbent else None,
                "pool": [{**c.row(), "values": c.values, "scores": c.scores} for c in self.pool],
                "seen": sorted(self._seen), "count": self._count, "rng": _rng_state(self.rng)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.pool = [Candidate(r["id"], dict(r["values"]), r["parent"], r["origin"], r["step"], r["scores"])
                     for r in state["pool"]]
        self.incumbent = next(c for c in self.pool if c.id == state["incumbent"])
        self._seen, self._count = set(state["seen"]), int(state["count"])
        self.rng.setstate(_rng_from_state(state["rng"]))

    def describe(self) -> dict[str, Any]:
        return {"selection": self.selection, "n_candidates": self.n_candidates, "temperature": self.temperature,
                "beam_width": self.beam_width if self.selection == "beam" else None, "merge": self.merge,
                "minibatch_gate": self.minibatch_gate}

    def _new(self, values: dict[str, Any], parent: str | None, origin: str, step: int) -> Candidate:
        self._count += 1
        self._seen.add(_key(values))
        return Candidate(f"c{self._count - 1}", dict(values), parent, origin, step)

    # ---- selection rules ----------------------------------------------------------------------
    def parents(self) -> list[Candidate]:
        """The candidates to expand this step."""
        assert self.incumbent is not None, "call start() first"
        if self.selection == "greedy":
            return [self.incumbent]
        if self.selection == "beam":
            return list(self.pool)
        won = wins({c.id: c.scores or {} for c in self.pool})
        weights = [won[c.id] for c in self.pool]
        if not sum(weights):
            return [self.incumbent]
        return self.rng.choices(self.pool, weights=weights, k=1)

    def _keep(self, candidates: list[Candidate]) -> list[Candidate]:
        """The pool after this step's candidates joined it (the incumbent always stays)."""
        assert self.incumbent is not None
        if self.selection == "greedy":
            return [self.incumbent]
        if self.selection == "beam":
            # The incumbent has the best mean (see _accepts) and goes first among equals, so it is always kept.
            return sorted(candidates, key=lambda c: (c.mean, c is self.incumbent), reverse=True)[: self.beam_width]
        table = {c.id: c.scores or {} for c in candidates}
        front, won = pareto_front(table), wins(table)
        return [c for c in candidates if c is self.incumbent or (c.id in front and won[c.id] > 0)]

    def _accepts(self, candidate: Candidate, accept: str) -> bool:
        assert self.incumbent is not None
        if accept == "better":
            return candidate.mean > self.incumbent.mean
        return candidate.mean >= self.incumbent.mean

    def _merged(self, candidates: list[Candidate], step: int) -> Candidate | None:
        """The best pair (by mean validation score) that changed disjoint parameters of the incumbent, combined."""
        assert self.incumbent is not None
        base = self.incumbent.values
        ranked = sorted((c for c in candidates if c is not self.incumbent and c.scores is not None),
                        key=lambda c: c.mean, reverse=True)
        for i, a in enumerate(ranked):
            for b in ranked[i + 1:]:
                ca, cb = a.changes(base), b.changes(base)
                if ca and cb and not set(ca) & set(cb):
                    values = {**base, **ca, **cb}
                    if _key(values) not in self._seen:
                        return self._new(values, f"{a.id}+{b.id}", "merge", step)
        return None

    # ---- one step (the StepPolicy interface) ---------------------------------------------------
    @property
    def best(self) -> EvalResult:
        assert self.incumbent is not None, "call start() first"
        return EvalResult("val", dict(self.incumbent.scores or {}))

    async def step(self, ctx: StepContext, step: int, batch: list[Example]) -> dict[str, Any]:
        """Expand the parents, score the candidates on validation, update the pool and apply the incumbent."""
        assert self.incumbent is not None, "call start() first"
        params = list(ctx.params)
        engine = ctx.engines["optimizer"]
        parents = self.parents()
        children: list[Candidate] = []
        train_scores: dict[str, EvalResult] = {}
        credits = []
        unchanged: list[UpdateEvent] = []
        for parent in parents:
            with ctx.rollouts.using_values(parent.values):
                train_scores[parent.id], credit = await ctx.forward_and_credit(step, batch)
                credits.append(credit)
                with ctx.phase("optimizer", step=step):
                    proposals = await asyncio.gather(*(self.optimizer.propose(
                        params, credit, engine, step, events=ctx.log.events, sample_index=i,
                        temperature=self.temperature) for i in range(self.n_candidates)))
            for proposal in proposals:
                unchanged += proposal.unchanged
                values = {**parent.values, **proposal.values}
                if proposal.values and _key(values) not in self._seen:  # identical proposals are evaluated once
                    children.append(self._new(values, parent.id, "proposal", step))

        evaluated = [c for c in children if await self._evaluate(ctx, c, batch, train_scores, step)]
        if self.merge:
            merged = self._merged(self.pool + evaluated, step)
            if merged is not None and await self._evaluate(ctx, merged, batch, None, step):
                evaluated.append(merged)

        old = self.incumbent
        best = max(evaluated, key=lambda c: c.mean, default=None)
        if best is not None and self._accepts(best, ctx.accept):
            self.incumbent = best
        self.pool = self._keep(self.pool + evaluated)
        updates = self._apply(ctx, old, step)

        decision = "accepted" if self.incumbent is not old else ("rejected" if evaluated else "no change")
        credit = credits[0]
        train = train_scores[parents[0].id]
        return {"step": step, "train_score": round(sum(t.score for t in train_scores.values()) / len(train_scores), 4),
                "n_train_scored": train.n,
                "val_score": round(best.mean if best is not None else self.incumbent.mean, 4),
                "best_val": round(self.incumbent.mean, 4), "decision": decision,
                "updates": [u.__dict__ for u in updates + unchanged], "batch": [e.id for e in batch],
                "credit": credit.strategy, "credit_details": credit.details,
                "failed": {"train": sorted({e for t in train_scores.values() for e in t.failed})},
                "search": {"selection": self.selection, "parents": [p.id for p in parents],
                           "candidates": [c.row() for c in children + [c for c in evaluated if c not in children]],
                           "pool": [c.id for c in self.pool], "incumbent": self.incumbent.id}}

    async def _evaluate(self, ctx: StepContext, candidate: Candidate, batch: list[Example],
                        parent_scores: dict[str, EvalResult] | None, step: int) -> bool:
        """Score a candidate on validation (after the minibatch gate, when on); False when the gate stopped it."""
        if self.minibatch_gate and parent_scores is not None and candidate.parent in parent_scores:
            with ctx.phase("validation", step=step, split="train"):  # GEPA's gate: the step's minibatch first
                on_batch = await ctx.rollouts.evaluate(batch, "train", candidate.values)
            new, old, _ = on_batch.compare(parent_scores[candidate.parent])
            if new < old:
                return False
        candidate.scores = (await ctx.validate(step, candidate.values)).scores
        return True

    def _apply(self, ctx: StepContext, old: Candidate, step: int) -> list[UpdateEvent]:
        """Give the parameters the incumbent's values through Parameter.update; each change is a logged version."""
        new = self.incumbent
        assert new is not None
        if new is old:
            return []
        return ctx.apply_values(new.values, step, reason=(
            f"search ({self.selection}): candidate {new.id}, validation {new.mean:.3f} (was {old.mean:.3f})"))
