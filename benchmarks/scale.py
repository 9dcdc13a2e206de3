"""Scale: time and memory to record a graph, cut its minimal subgraph, run credit bookkeeping and serialize the trace.

Graphs of 100 -> 10,000 traced ops are generated from a seed (a chain whose every op also reads a random earlier
value or parameter); the agent loop is 1,000 steps of LLM call -> tool -> observation on a zero-latency scripted
engine. A step that took longer than `budget_s` at one size is not run at the larger sizes (marked skipped).
"""
from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from typing import Any, Callable

from credit.adaptive import AdaptiveCredit
from credit.backprop import Backprop
from credit.trace import TracePropagation
from textgrad_core.credit import ExampleTrace
from textgrad_core.engines import EngineSet, ScriptedBackend
from textgrad_core.graph import Graph
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.ops import LLMCall, traced
from textgrad_core.variable import Parameter, Tape, Variable

SIZES = (100, 300, 1000, 3000, 10000)
STEPS = ("record", "minimal subgraph", "backprop bookkeeping", "trace serialization")


@traced
def combine(left: str, right: str) -> str:
    """Joins two values (a stand-in for any Python step of a system)."""
    return f"{left[:20]}|{right[:20]}"


@traced
def tool(action: str) -> str:
    """The environment's answer to an action."""
    return f"observation after {action[-12:]}"


def _wrong(prediction: Any, example: Any) -> MetricResult:
    """Always wrong, so feedback flows."""
    return MetricResult(score=0.0, feedback="Wrong: the final value misses the target.")


def _engines() -> EngineSet:
    backend = ScriptedBackend(reply_fn=lambda request: "Use more of the earlier values.")
    return EngineSet({"forward": {"provider": "scripted", "model": "s", "cache": {"enabled": False}}}, scripted=backend)


def generated_tape(n_ops: int, seed: int = 0) -> tuple[Tape, Variable, Variable, list[Parameter]]:
    """The tape of `n_ops` traced ops, each also reading a random earlier value, with a parameter every 50 ops: the
    tape, its output, the loss on it and the parameters."""
    rng = random.Random(seed)
    params = [Parameter(value=f"parameter {i}", role=f"setting {i}", name=f"p{i}") for i in range((n_ops - 2) // 50 + 1)]
    with Tape("generated") as tape:
        values: list[Variable] = [Variable("input", role="input")]
        for i in range(n_ops - 1):
            other = params[i // 50] if i % 50 == 0 else values[rng.randrange(len(values))]
            values.append(combine(values[-1], other))
        loss = MetricLoss(_wrong)(values[-1], None)
    return tape, values[-1], loss, params


def generated_graph(n_ops: int, seed: int = 0) -> tuple[ExampleTrace, list[Parameter]]:
    """A recorded graph of `n_ops` traced ops and its trainable parameters (one per 50 ops)."""
    tape, output, loss, params = generated_tape(n_ops, seed)
    return ExampleTrace("generated", output, loss, Graph(tape.variables + [loss])), params


def agent_loop(steps: int, engines: EngineSet) -> tuple[ExampleTrace, list[Parameter]]:
    """An agent of `steps` LLM call -> tool steps, its instruction the one parameter."""
    param = Parameter(value="Choose the next action from the last observation.", role="agent instruction", name="agent")
    act = LLMCall(engines["forward"], param, name="agent_step")
    with Tape("agent") as tape:
        observation: Variable = Variable("start", role="first observation")
        for _ in range(steps):
            observation = tool(act(observation))
        loss = MetricLoss(_wrong)(observation, None)
    return ExampleTrace("agent", observation, loss, Graph(tape.variables + [loss])), [param]


def measure(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, peak MiB allocated, result) of one call; memory from a second, traced call."""
    gc.collect()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def run(sizes: tuple[int, ...] = SIZES, agent_steps: int = 1000, budget_s: float = 30.0) -> list[dict[str, Any]]:
    """Rows {graph, ops, step, seconds, peak_mb | skipped} for every size and the agent loop."""
    rows: list[dict[str, Any]] = []
    over: set[str] = set()
    for n in sizes:
        rows += _steps(f"generated", n, lambda n=n: generated_graph(n), over, budget_s)
    rows += _steps("agent loop", agent_steps, lambda: agent_loop(agent_steps, _engines()), set(), budget_s, agent=True)
    return rows


def _steps(graph: str, n: int, build: Callable[[], tuple[ExampleTrace, list[Parameter]]], over: set[str],
           budget_s: float, agent: bool = False) -> list[dict[str, Any]]:
    rows = []
    seconds, peak, (trace, params) = measure(build)
    ops = sum(1 for v in trace.graph.variables if v.op is not None)
    rows.append({"graph": graph, "ops": ops, "step": "record", "seconds": seconds, "peak_mb": peak})
    actions = {
        "minimal subgraph": lambda: trace.graph.minimal_subgraph(trace.output, params),
        "backprop bookkeeping": lambda: asyncio.run(Backprop().assign([trace], params, _engines()["credit"])),
        "trace serialization": lambda: asyncio.run(TracePropagation(value_limit=200).assign([trace], params, _engines()["credit"])),
    }
    if agent:
        # A budget cuts values (head and tail kept), never the structure: a 1,000-step loop's op lines alone are
        # far over 8,000 tokens, which is what adaptive credit is for (trace when it fits, else backprop).
        actions["trace with an 8,000-token budget (values cut)"] = lambda: asyncio.run(
            TracePropagation(prompt_token_budget=8000).assign([trace], params, _engines()["credit"]))
        actions["adaptive, 8,000 tokens (too long: backprop instead)"] = lambda: asyncio.run(
            AdaptiveCredit(max_trace_tokens=8000, fallback="backprop").assign([trace], params, _engines()["credit"]))
    for step, action in actions.items():
        if step in over:
            rows.append({"graph": graph, "ops": ops, "step": step, "skipped": f"over {budget_s:g} s at a smaller size"})
            continue
        seconds, peak, result = measure(action)
        row = {"graph": graph, "ops": ops, "step": step, "seconds": seconds, "peak_mb": peak}
        if hasattr(result, "details") and "trace_tokens" in (result.details or {}):
            row["trace_tokens"] = result.details["trace_tokens"]
        if hasattr(result, "details") and "strategy_by_example" in (result.details or {}):
            row["strategies"] = sorted(set(result.details["strategy_by_example"].values()))
        if hasattr(result, "g"):
            row["subgraph_nodes"] = result.g.number_of_nodes()
        rows.append(row)
        if seconds > budget_s:
            over.add(step)
    return rows
