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
from typing import TYPE_CHECKING, Any

from textgrad_core.errors import ConfigError
from textgrad_core.optimizers.base import ProposingOptimizer, UpdateEvent

if TYPE_CHECKING:
    from textgrad_core.task import Example
    from textgrad_core.trainer import Trainer

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


class CandidateSearch:
    """Proposes `n_candidates` per parent per step with a proposing optimizer and keeps a pool by `selection`.

    - greedy: the pool is the incumbent; the best candidate replaces it when not worse on validation.
    - beam: the pool keeps the `beam_width` best candidates by mean validation score; each is a parent every step.
    - pareto (GEPA): the pool keeps the candidates that are best on at least one validation example and not
      dominated (plus the incumbent); one parent per step, sampled in proportion to the examples it wins.
    `merge` adds, once per step, the candidate that combines two pool candidates changing disjoint parameters.
    `minibatch_gate` (GEPA) evaluates a candidate on validation only if it is not worse than its parent on the
    step's minibatch.
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
    def start(self, values: dict[str, Any], scores: dict[str, float]) -> None:
        """Begin from the trainer's initial values and their validation scores."""
        self.incumbent = self._new(values, None, "initial", 0)
        self.incumbent.scores = dict(scores)
        self.pool = [self.incumbent]

    def state(self) -> dict[str, Any]:
        """The pool, for the checkpoint."""
        return {"selection": self.selection, "incumbent": self.incumbent.id if self.incumbent else None,
                "pool": [{**c.row(), "values": c.values, "scores": c.scores} for c in self.pool]}

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

    # ---- one trainer step ---------------------------------------------------------------------
    async def step(self, trainer: "Trainer", step: int, batch: list["Example"], best_val: float) -> tuple[float, dict[str, Any]]:
        """Expand the parents, score the candidates on validation, update the pool and apply the incumbent."""
        if self.incumbent is None:  # the trainer normally calls start() with its initial evaluation
            with trainer.phase("validation"):
                self.start(trainer.params.values(), (await trainer.evaluate(trainer.val_examples(), "val")).scores)
        assert self.incumbent is not None
        params = list(trainer.params)
        events = trainer.run.events if trainer.run else None
        engine = trainer.engines["optimizer"]
        parents = self.parents()
        children: list[Candidate] = []
        train_scores: dict[str, float] = {}
        credits = []
        unchanged: list[UpdateEvent] = []
        for parent in parents:
            with trainer.using_values(parent.values):
                train_scores[parent.id], credit = await trainer.forward_and_credit(step, batch)
                credits.append(credit)
                with trainer.phase("optimizer"):
                    proposals = await asyncio.gather(*(self.optimizer.propose(
                        params, credit, engine, step, events=events, sample_index=i, temperature=self.temperature)
                        for i in range(self.n_candidates)))
            for proposal in proposals:
                unchanged += proposal.unchanged
                values = {**parent.values, **proposal.values}
                if proposal.values and _key(values) not in self._seen:  # identical proposals are evaluated once
                    children.append(self._new(values, parent.id, "proposal", step))

        with trainer.phase("validation"):
            evaluated = [c for c in children if await self._evaluate(trainer, c, batch, train_scores)]
            if self.merge:
                merged = self._merged(self.pool + evaluated, step)
                if merged is not None and await self._evaluate(trainer, merged, batch, None):
                    evaluated.append(merged)

        old = self.incumbent
        best = max(evaluated, key=lambda c: c.mean, default=None)
        if best is not None and self._accepts(best, trainer.config.accept):
            self.incumbent = best
        self.pool = self._keep(self.pool + evaluated)
        updates = self._apply(trainer, old, step)

        decision = "accepted" if self.incumbent is not old else ("rejected" if evaluated else "no change")
        credit = credits[0]
        record = {"step": step, "train_score": round(sum(train_scores.values()) / len(train_scores), 4),
                  "val_score": round(best.mean if best is not None else best_val, 4),
                  "best_val": round(self.incumbent.mean, 4), "decision": decision,
                  "updates": [u.__dict__ for u in updates + unchanged], "batch": [e.id for e in batch],
                  "credit": credit.strategy, "credit_details": credit.details,
                  "search": {"selection": self.selection, "parents": [p.id for p in parents],
                             "candidates": [c.row() for c in children + [c for c in evaluated if c not in children]],
                             "pool": [c.id for c in self.pool], "incumbent": self.incumbent.id}}
        return self.incumbent.mean, record

    async def _evaluate(self, trainer: "Trainer", candidate: Candidate, batch: list["Example"],
                        parent_scores: dict[str, float] | None) -> bool:
        """Score a candidate on validation (after the minibatch gate, when on); False when the gate stopped it."""
        with trainer.using_values(candidate.values):
            if self.minibatch_gate and parent_scores is not None and candidate.parent in parent_scores:
                if (await trainer.evaluate(batch, "train")).score < parent_scores[candidate.parent]:
                    return False
            candidate.scores = (await trainer.evaluate(trainer.val_examples(), "val")).scores
        return True

    def _apply(self, trainer: "Trainer", old: Candidate, step: int) -> list[UpdateEvent]:
        """Give the parameters the incumbent's values through Parameter.update; each change is a logged version."""
        new = self.incumbent
        assert new is not None
        if new is old:
            return []
        events = []
        for param in trainer.params:
            if param.value != new.values[param.id]:
                before = param.version
                entry = param.update(new.values[param.id], step, reason=(
                    f"search ({self.selection}): candidate {new.id}, validation {new.mean:.3f} (was {old.mean:.3f})"))
                trainer.log_version(param, entry)
                events.append(UpdateEvent(param.id, True, before, entry.version, reason=entry.reason))
        return events
