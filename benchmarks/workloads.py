"""The benchmark workloads, built from the framework's public pieces (ops, losses, credit `assign`, optimizer `step`).

(a) planner -> solver -> LLM judge with a reference answer, batch 8, 3 steps, both instructions trained;
(b) one stage, batch 32, 1 step, exact-match loss;
(c) a 6-stage chain, batch 4, 1 step, exact-match loss.
Each runs with backprop+tgd or trace+joint. `run_workload` returns the call DAG it implied (for the limits),
the phase timestamps and the process CPU spent in the run.

Run one in its own process (how the benchmark measures start-up, CPU and memory):
    python -m benchmarks.workloads --workload a --pair backprop+tgd --base-url http://127.0.0.1:PORT/v1 --out r.json
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import os
import time
from typing import Any

from benchmarks.spec import JUDGE_INSTRUCTION, WORKLOADS, WorkloadSpec, instruction, is_exact, question
from textgrad_core.engines import EngineSet, LLMRequest
from textgrad_core.engines.clients import import_after_first_request
from textgrad_core.loss import JudgeLoss, MetricLoss, MetricResult
from textgrad_core.ops import LLMCall
from textgrad_core.variable import Parameter, Tape, Variable

# Needed only once the first replies are back (graphs, credit, optimizer, the call DAG): imported while the first
# requests are in flight, as `import textgrad_core as tc` would import them on first use, not before.
AFTER_FIRST_REQUEST = ("textgrad_core.graph", "textgrad_core.credit", "credit.backprop", "credit.trace",
                       "textgrad_core.optimizers", "benchmarks.callgraph")

PAIRS = ("backprop+tgd", "trace+joint")
SLOTS = 8  # max_concurrency of the engine every role shares


def engine_config(base_url: str, slots: int = SLOTS) -> dict[str, Any]:
    """One OpenAI-compatible engine for every role (one client, one concurrency bound), no cache: every call is paid."""
    return {"provider": "openai", "model": "mock-model", "base_url": base_url, "max_concurrency": slots,
            "max_retries": 2, "timeout": 60, "cache": {"enabled": False}}


def exact(prediction: Any, reference: str) -> MetricResult:
    """1 when the last line says 'Answer: <reference>'."""
    ok = is_exact(prediction, reference)
    return MetricResult(score=float(ok), feedback="Correct." if ok else f"Wrong: the expected answer is {reference}.")


async def warm_up(engines: EngineSet) -> None:
    """One call through the run's own engine: SDK client and lazily imported resources are then loaded."""
    await engines["forward"].acomplete(LLMRequest.chat("warm-up", tag="warmup"))


def _strategies(pair: str) -> tuple[Any, Any]:
    """The credit strategy and optimizer of a pair."""
    from credit.backprop import Backprop
    from credit.trace import TracePropagation
    from textgrad_core.optimizers import TGD, JointUpdate

    credit_name, optimizer_name = pair.split("+")
    return ({"backprop": Backprop, "trace": TracePropagation}[credit_name](),
            {"tgd": TGD, "joint": JointUpdate}[optimizer_name]())


async def run_workload(spec: WorkloadSpec, pair: str, base_url: str, warm: bool = False,
                       profiler: Any = None) -> dict[str, Any]:
    """Train the workload's parameters for its steps; returns phases, the call DAG's figures and counts.

    `warm`: one call first, in this same loop and through the same engines (so the client it builds is the one
    the run uses) and the modules it defers imported; the steady-state clocks (`cpu_run_s`, `t_run_start`, the
    profiler) start after that. The
    process's own clocks (wall from its start, `cpu_process_s`) include it, as they include every import."""
    import_after_first_request(AFTER_FIRST_REQUEST)
    engines = EngineSet({"forward": engine_config(base_url)})
    if warm:
        await warm_up(engines)
        for name in AFTER_FIRST_REQUEST:  # steady state: one-time imports are done (waits for the deferred ones)
            importlib.import_module(name)
    if profiler is not None:
        profiler.enable()
    cpu0, t_run = time.process_time(), time.time()
    credit_name, optimizer_name = pair.split("+")
    params = [Parameter(value=instruction(s),
                        role=f"instruction of the {s}", name=f"{s}.instruction") for s in spec.stages]
    ops = [LLMCall(engines["forward"], p, name=s) for s, p in zip(spec.stages, params)]
    judge = JudgeLoss(engines["judge"], JUDGE_INSTRUCTION) if spec.judge else None

    metric = MetricLoss(exact, name="exact_match")

    async def forward(step: int, index: int) -> Any:
        text, reference = question(step, index)
        with Tape(f"s{step}e{index}") as tape:
            value: Variable = Variable(text, role="question")
            for op in ops:
                value = await op.acall(value)
            if judge is not None:
                loss = await judge.acall(value, f"{text}\nReference answer: {reference}")
            else:
                loss = metric(value, reference)
        from textgrad_core.credit import ExampleTrace  # after this example's calls (see AFTER_FIRST_REQUEST)
        from textgrad_core.graph import Graph

        return ExampleTrace(f"s{step}e{index}", value, loss, Graph(tape.variables + [value, loss]))

    dag, phases, after, strategies = None, [], [], None
    for step in range(spec.steps):
        t0 = time.time()
        traces = await asyncio.gather(*(forward(step, i) for i in range(spec.batch)))
        t1 = time.time()
        if strategies is None:  # built after the first forward wave: nothing the first request waits for
            from benchmarks.callgraph import CallDAG

            dag, strategies = CallDAG(), _strategies(pair)
        credit, optimizer = strategies
        result = await credit.assign(list(traces), params, engines["credit"])
        t2 = time.time()
        await optimizer.step(params, result, engines["optimizer"], step=step)
        t3 = time.time()
        phases.append({"step": step, "forward": [t0, t1], "credit": [t1, t2], "optimizer": [t2, t3]})
        after = _step_calls(dag, list(traces), params, credit_name, optimizer_name, result, step, after)
    cpu = time.process_time() - cpu0
    if profiler is not None:
        profiler.disable()
    return {"workload": spec.key, "pair": pair, "t_run_start": t_run, "t_run_end": time.time(), "cpu_run_s": cpu,
            "cpu_process_s": sum(os.times()[:2]), "warm_up": warm,
            "phases": phases, "predicted_calls": dag.count(), "depth": dag.depth(), "schedule_rounds": dag.schedule(SLOTS),
            "slots": SLOTS, "final_values": {p.id: p.value for p in params}}


def _step_calls(dag: Any, traces: list, params: list, credit_name: str, optimizer_name: str, result: Any,
                step: int, after: list[str]) -> list[str]:
    """Add one step's calls to the DAG; returns the calls the next step waits for (the optimizer's)."""
    from benchmarks.callgraph import backprop_calls, forward_calls

    credit_calls: list[str] = []
    for t in traces:
        produced = forward_calls(dag, t, f"s{step}:{t.example_id}", after)
        loss_call = produced.get(t.loss.id) or produced[t.output.id]
        if credit_name == "backprop":
            credit_calls += backprop_calls(dag, t, params, f"s{step}:{t.example_id}", loss_call)
        else:
            credit_calls.append(loss_call)  # trace credit makes no call: the optimizer waits for every loss
    if optimizer_name == "joint":
        return [dag.add(f"s{step}:opt:joint", "optimizer", credit_calls)]
    with_feedback = [p for p in params if result.for_parameter(p)]
    return [dag.add(f"s{step}:opt:{p.id}", "optimizer", credit_calls) for p in with_feedback]


def main(argv: list[str] | None = None) -> None:
    """Command line: run one workload against a server and write the result as JSON."""
    parser = argparse.ArgumentParser(description="Run one benchmark workload against an OpenAI-compatible server.")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--pair", choices=PAIRS, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--profile", default=None, help="write cProfile stats of the run (after imports and any warm-up) here")
    parser.add_argument("--warm-up", action="store_true", help="make one call first, so the run is steady state")
    parser.add_argument("--batch", type=int, default=None, help="override the workload's batch size (smoke runs)")
    parser.add_argument("--steps", type=int, default=None, help="override the workload's number of steps")
    a = parser.parse_args(argv)
    spec = WORKLOADS[a.workload]
    spec = dataclasses.replace(spec, batch=a.batch or spec.batch, steps=a.steps or spec.steps)
    profiler = None
    if a.profile:
        import cProfile
        profiler = cProfile.Profile()
    result = asyncio.run(run_workload(spec, a.pair, a.base_url, warm=a.warm_up, profiler=profiler))
    if profiler is not None:
        profiler.dump_stats(a.profile)
    import resource
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
