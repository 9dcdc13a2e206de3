"""GEPA's candidate pool: per-example fronts, dominated-program removal, parent sampling and merge around an ancestor.

The rules follow GEPA's published code (gepa-ai/gepa: `gepa_utils.py`, `strategies/candidate_selector.py`,
`proposer/merge.py`), restated here over our own data types:

- the *front* of a validation example is the set of programs that reach the best score on it (ties included);
- a program is *dominated* when every front it belongs to also holds another program that is not itself
  dominated; programs are examined from the lowest mean validation score up, one removal at a time, so of two
  interchangeable programs the weaker (or, on equal means, the older) one goes;
- a parent is sampled with weight = the number of fronts the program is in after the removal;
- a merge takes two such programs with a common ancestor that scores no better than either, and takes each
  component from the descendant that changed it.
Ties between programs of equal mean are broken by creation order, never by set or dict order, so a run's
choices depend on its seed alone.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

NO_SCORE = float("-inf")  # the mean of a program without a single validation score (GEPA's convention)


@dataclass(eq=False)
class Program:
    """One candidate: a value for every component, its lineage and its score on each validation example."""

    index: int
    values: dict[str, Any]
    parents: list[int] = field(default_factory=list)  # [] for the seed, one for a mutation, two for a merge
    origin: str = "seed"  # "seed", "mutation" or "merge"
    step: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    next_component: int = 0  # round-robin position: the component its next mutation rewrites

    @property
    def id(self) -> str:
        return f"p{self.index}"

    @property
    def mean(self) -> float:
        """Mean validation score over the examples it was scored on (-inf when none)."""
        return sum(self.scores.values()) / len(self.scores) if self.scores else NO_SCORE

    def row(self) -> dict[str, Any]:
        """The short record of the program for metrics and step records."""
        return {"id": self.id, "parents": [f"p{i}" for i in self.parents], "origin": self.origin, "step": self.step,
                "val": None if not self.scores else round(self.mean, 4)}

    def state(self) -> dict[str, Any]:
        return {"index": self.index, "values": self.values, "parents": self.parents, "origin": self.origin,
                "step": self.step, "scores": self.scores, "next_component": self.next_component}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "Program":
        return cls(int(s["index"]), dict(s["values"]), [int(p) for p in s["parents"]], s["origin"], int(s["step"]),
                   {k: float(v) for k, v in s["scores"].items()}, int(s["next_component"]))


# ---- selection ---------------------------------------------------------------------------------------------------
def fronts(programs: list[Program]) -> dict[str, set[int]]:
    """For each validation example some program scored, the programs at the best score on it."""
    best: dict[str, float] = {}
    holders: dict[str, set[int]] = {}
    for p in programs:
        for example, score in p.scores.items():
            if score > best.get(example, NO_SCORE):
                best[example], holders[example] = score, {p.index}
            elif score == best.get(example):
                holders[example].add(p.index)
    return {e: holders[e] for e in sorted(holders)}


def remove_dominated(example_fronts: dict[str, set[int]], means: dict[int, float]) -> dict[str, set[int]]:
    """The fronts without the dominated programs (GEPA's iterative removal, weakest program examined first)."""
    order = sorted({i for front in example_fronts.values() for i in front}, key=lambda i: (means[i], i))
    dominated: set[int] = set()
    removed = True
    while removed:
        removed = False
        for y in order:
            if y in dominated:
                continue
            others = set(order) - dominated - {y}
            if all(front & others for front in example_fronts.values() if y in front):
                dominated.add(y)
                removed = True
                break  # start over: removing y may keep a later program from being dominated
    return {e: front - dominated for e, front in example_fronts.items()}


def selection_weights(programs: list[Program]) -> dict[int, int]:
    """Program index -> how many examples' fronts it is in after dominated removal (the pickable programs only)."""
    reduced = remove_dominated(fronts(programs), {p.index: p.mean for p in programs})
    weights: dict[int, int] = {}
    for front in reduced.values():
        for i in front:
            weights[i] = weights.get(i, 0) + 1
    return dict(sorted(weights.items()))


def select_parent(programs: list[Program], rng: random.Random) -> Program:
    """A parent sampled in proportion to its weight; the best program by mean when no example has a score yet."""
    weights = selection_weights(programs)
    if not weights:
        return best_program(programs)
    tickets = [i for i, w in weights.items() for _ in range(w)]
    return programs[rng.choice(tickets)]


def best_program(programs: list[Program]) -> Program:
    """The program with the best mean validation score (the earliest among equals)."""
    return max(programs, key=lambda p: (p.mean, -p.index))


# ---- merge around a common ancestor ----------------------------------------------------------------------------
def ancestors(programs: list[Program], index: int) -> set[int]:
    """Every program `index` descends from (parents, their parents, ...)."""
    found: set[int] = set()
    todo = list(programs[index].parents)
    while todo:
        i = todo.pop()
        if i not in found:
            found.add(i)
            todo += programs[i].parents
    return found


def _mergeable(components: list[str], anc: Program, a: Program, b: Program) -> bool:
    """Some component was changed by exactly one of the two descendants (so the merge takes something from each)."""
    return any((anc.values[c] == a.values[c] or anc.values[c] == b.values[c]) and a.values[c] != b.values[c]
               for c in components)


def merged_values(components: list[str], anc: Program, a: Program, b: Program,
                  rng: random.Random) -> tuple[dict[str, Any], tuple[int, ...]]:
    """The merge of `a` and `b` around `anc`, and which program each component was taken from."""
    values: dict[str, Any] = {}
    source: list[int] = []
    for c in components:
        old, va, vb = anc.values[c], a.values[c], b.values[c]
        if (old == va or old == vb) and va != vb:
            take = b if old == va else a  # the descendant that changed it
        elif old != va and old != vb:
            # Both changed it: the better program's value (GEPA's rule; a coin on equal means).
            take = a if a.mean > b.mean else b if b.mean > a.mean else rng.choice([a, b])
        else:  # both kept the ancestor's value
            take = a
        values[c] = take.values[c]
        source.append(take.index)
    return values, tuple(source)


@dataclass
class MergeLog:
    """The merges tried so far: (a, b, ancestor) triplets and (a, b, sources) descriptions, never tried twice."""

    triplets: list[tuple[int, int, int]] = field(default_factory=list)
    descriptions: list[tuple[int, int, tuple[int, ...]]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        return {"triplets": [list(t) for t in self.triplets],
                "descriptions": [[a, b, list(src)] for a, b, src in self.descriptions]}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "MergeLog":
        return cls([tuple(int(x) for x in t) for t in s["triplets"]],  # type: ignore[misc]
                   [(int(a), int(b), tuple(int(x) for x in src)) for a, b, src in s["descriptions"]])


def _common_ancestor_pair(programs: list[Program], candidates: list[int], components: list[str], log: MergeLog,
                          rng: random.Random, attempts: int) -> tuple[int, int, int] | None:
    """A pair of candidates and a common ancestor worth merging around, sampled (up to `attempts` pairs)."""
    for _ in range(attempts):
        if len(candidates) < 2:
            return None
        i, j = sorted(rng.sample(candidates, 2))
        up_i, up_j = ancestors(programs, i), ancestors(programs, j)
        if i in up_j or j in up_i:
            continue  # one descends from the other: nothing to combine
        common = [k for k in sorted(up_i & up_j)
                  if (i, j, k) not in log.triplets
                  and programs[k].mean <= programs[i].mean and programs[k].mean <= programs[j].mean
                  and _mergeable(components, programs[k], programs[i], programs[j])]
        if common:
            weights = [max(programs[k].mean, 0.0) for k in common]
            k = rng.choices(common, weights=weights)[0] if sum(weights) > 0 else rng.choice(common)
            return i, j, k
    return None


def find_merge(programs: list[Program], components: list[str], log: MergeLog, rng: random.Random,
               overlap_floor: int, attempts: int = 10) -> tuple[dict[str, Any], int, int, int] | None:
    """GEPA's merge proposal: (values, a, b, ancestor) among the pickable programs, or None when none qualifies.

    The triplet is not recorded here (the caller does, once it decides to evaluate the merge); the description
    (which program each component comes from) is, so the same combination is never proposed again.
    """
    candidates = sorted(selection_weights(programs))
    if len(candidates) < 2 or len(programs) < 3:
        return None
    for _ in range(attempts):
        found = _common_ancestor_pair(programs, candidates, components, log, rng, attempts)
        if found is None:
            continue
        i, j, k = found
        values, source = merged_values(components, programs[k], programs[i], programs[j], rng)
        if (i, j, source) in log.descriptions:
            continue
        if len(set(programs[i].scores) & set(programs[j].scores)) < overlap_floor:
            continue  # too few validation examples scored by both to compare the merge with them
        log.descriptions.append((i, j, source))
        return values, i, j, k
    return None


def merge_subsample(scores_a: dict[str, float], scores_b: dict[str, float], size: int,
                    rng: random.Random) -> list[str]:
    """Validation ids to test a merge on: a third where `a` is better, a third where `b` is, a third of ties."""
    common = sorted(set(scores_a) & set(scores_b))
    buckets = ([e for e in common if scores_a[e] > scores_b[e]], [e for e in common if scores_b[e] > scores_a[e]],
               [e for e in common if scores_a[e] == scores_b[e]])
    per_bucket = max(1, math.ceil(size / 3))
    chosen: list[str] = []
    for bucket in buckets:
        if len(chosen) >= size:
            break
        available = [e for e in bucket if e not in chosen]
        take = min(len(available), per_bucket, size - len(chosen))
        if take > 0:
            chosen += rng.sample(available, take)
    missing = size - len(chosen)
    if missing > 0:
        unused = [e for e in common if e not in chosen]
        if len(unused) >= missing:
            chosen += rng.sample(unused, missing)
        elif common:
            chosen += rng.choices(common, k=missing)  # fewer examples than the subsample: some count twice
    return chosen[:size]
