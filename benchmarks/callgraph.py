"""The DAG of LLM calls a step must make, from the recorded graphs, and the limits it puts on wall time.

dependency limit = the longest chain of calls that wait on each other x latency (infinite slots);
schedule limit   = the makespan of the same DAG on S concurrency slots, every call taking `latency`
                   (greedy list scheduling, longest remaining chain first: optimal here, where every example
                   of a phase has the same shape).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from textgrad_core.credit import ExampleTrace
from textgrad_core.variable import Variable

LLM_OP_KINDS = ("llm", "formatted_llm")


@dataclass
class CallDAG:
    """Calls by id, each with its phase and the ids of the calls it waits for."""

    phase: dict[str, str] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)

    def add(self, call_id: str, phase: str, deps: list[str]) -> str:
        """Add one call; returns its id."""
        self.phase[call_id] = phase
        self.deps[call_id] = list(deps)
        return call_id

    def ids(self, phase: str | None = None) -> list[str]:
        """Call ids in insertion order, optionally of one phase."""
        return [c for c, p in self.phase.items() if phase is None or p == phase]

    def count(self) -> dict[str, int]:
        """phase -> number of calls."""
        out: dict[str, int] = {}
        for p in self.phase.values():
            out[p] = out.get(p, 0) + 1
        return out

    def depth(self) -> int:
        """Calls on the longest dependency chain."""
        level: dict[str, int] = {}
        for c in self.phase:  # insertion order is a topological order: deps are always added first
            level[c] = 1 + max((level[d] for d in self.deps[c]), default=0)
        return max(level.values(), default=0)

    def schedule(self, slots: int) -> int:
        """Rounds of `slots` parallel calls needed (makespan in units of one call's latency)."""
        order = list(self.phase)
        children: dict[str, list[str]] = {c: [] for c in order}
        for c in order:
            for d in self.deps[c]:
                children[d].append(c)
        tail: dict[str, int] = {}
        for c in reversed(order):
            tail[c] = 1 + max((tail[k] for k in children[c]), default=0)
        waiting = {c: len(self.deps[c]) for c in order}
        ready = [(-tail[c], i, c) for i, c in enumerate(order) if waiting[c] == 0]
        heapq.heapify(ready)
        rounds, done = 0, 0
        index = {c: i for i, c in enumerate(order)}
        while ready:
            batch = [heapq.heappop(ready)[2] for _ in range(min(slots, len(ready)))]
            rounds += 1
            done += len(batch)
            for c in batch:
                for k in children[c]:
                    waiting[k] -= 1
                    if waiting[k] == 0:
                        heapq.heappush(ready, (-tail[k], index[k], k))
        assert done == len(order), "the call DAG has a cycle"
        return rounds


def forward_calls(dag: CallDAG, trace: ExampleTrace, prefix: str, after: list[str]) -> dict[str, str]:
    """Add the forward (and judge) calls of one example; returns variable id -> the call that produced it."""
    produced: dict[str, str] = {}
    for var in trace.graph.topological_order() + ([trace.loss] if trace.loss.id not in trace.graph else []):
        if var.op is None or not (var.op.kind in LLM_OP_KINDS or (var.op.kind == "loss" and var.op.prompt)):
            continue
        deps = sorted({c for v in _llm_ancestors(var, produced) for c in [produced[v]]}) or list(after)
        produced[var.id] = dag.add(f"{prefix}:fwd:{var.id}", "judge" if var.op.kind == "loss" else "forward", deps)
    return produced


def _llm_ancestors(var: Variable, produced: dict[str, str]) -> list[str]:
    """The nearest variables upstream of `var` that an LLM call produced."""
    found, stack, seen = [], list(var.inputs), set()
    while stack:
        v = stack.pop()
        if v.id in seen:
            continue
        seen.add(v.id)
        if v.id in produced:
            found.append(v.id)
        else:
            stack.extend(v.inputs)
    return found


def backprop_calls(dag: CallDAG, trace: ExampleTrace, params: list, prefix: str, loss_call: str) -> list[str]:
    """Add backprop's calls for one example: one per edge of the minimal subgraph, each after its output's feedback."""
    sub = trace.graph.minimal_subgraph(trace.output, params)
    if trace.output.id not in sub.g:
        return []
    feedback_ready: dict[str, list[str]] = {trace.output.id: [loss_call]}
    added: list[str] = []
    # Reverse topological order: a node's feedback is ready once every edge call to it from its successors is.
    for var in reversed(sub.topological_order()):
        if var.id == trace.output.id:
            continue
        calls = []
        for succ in sorted(sub.g.successors(var.id)):
            calls.append(dag.add(f"{prefix}:edge:{succ}->{var.id}", "credit", feedback_ready[succ]))
        feedback_ready[var.id] = calls
        added += calls
    return added
