"""Measure LLM calls and prompt tokens per optimization step, for each credit strategy x optimizer.

Two measurements:
- scripted 1-, 3- and 6-stage pipelines (no service): every stage is an LLM call with its own trainable instruction,
  feeding the next stage; the last output is scored by an always-wrong metric so every example sends feedback. Each
  call's prompt size is the characters of every message sent (system, user and, for re-asks, the quoted reply) and
  approximate tokens (characters / 4, no tokenizer is tied to the engine), with short and with long values;
- the benchmark workloads (`benchmarks.workloads`: a, b, c x backprop+tgd, trace+joint) against the local mock server
  at 0 ms: prompt tokens per phase per step as the server counts them (characters / 4), the figure issue 12 judges.

Run: `python -m benchmarks.credit_calls` (prints the markdown tables used in docs/credit.md). With
`--before DIR`, DIR is another checkout of this repository (e.g. `git worktree add /tmp/tok_before <commit>`): the
same measurements run on its code too, and the token tables read "before -> after".
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from experiments.factory import CREDIT, OPTIMIZERS, build_credit, build_optimizer
from textgrad_core.credit import ExampleTrace
from textgrad_core.engines import EngineSet, LLMRequest, ScriptedBackend
from textgrad_core.errors import ConfigError
from textgrad_core.graph import Graph
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.ops import LLMCall
from textgrad_core.variable import Parameter, Tape, Variable


def _reply(request: LLMRequest, output_chars: int = 0) -> str:
    """Scripted replies in the format each kind of call asks for; a stage's output has `output_chars` of reasoning."""
    kind = request.tag.split(":", 1)[0]
    if kind == "optimizer":
        if "<JOINT_UPDATE>" in request.user_text:
            ids = json.loads(re.search(r"<PARAMETERS_JSON>(.*?)</PARAMETERS_JSON>", request.user_text, re.S).group(1))
            return json.dumps({"reasoning": "r", "updates": {pid: f"improved {pid}" for pid in ids}})
        return "<NEW_VALUE>\nimproved\n</NEW_VALUE>"
    if kind == "credit":
        return "Be more specific."
    return ("Let me reason step by step. " * (output_chars // 28 + 1))[:output_chars] + "\nAnswer: 1" if output_chars else "stage output"


def _wrong(prediction, example):
    """Always wrong."""
    return MetricResult(score=0.0, feedback="Wrong: expected 1.")


LONG_INSTRUCTION = 800  # a realistic instruction
LONG_OUTPUT = 6000  # a long chain-of-thought response, its answer on the last line


def _chars(requests) -> int:
    """Characters of every message of these requests."""
    return sum(len(m.content) for r in requests for m in r.messages)


def measure(credit_name: str, optimizer_name: str, stages: int, batch: int, instruction_chars: int = 0,
            output_chars: int = 0) -> dict[str, int] | None:
    """Credit and optimizer calls of one step and their prompt characters; None when the pair is incompatible."""
    credit = build_credit({"name": credit_name})
    try:
        optimizer = build_optimizer({"name": optimizer_name}, credit)
    except ConfigError:
        return None
    backend = ScriptedBackend(reply_fn=lambda r: _reply(r, output_chars))
    engines = EngineSet({"forward": {"provider": "scripted", "model": "s", "cache": {"enabled": False}}}, scripted=backend)
    pad = " Work through the question carefully and state the result on the last line." * (instruction_chars // 77 + 1)
    params = [Parameter(value=f"Instruction of stage {i}." + (pad[:instruction_chars] if instruction_chars else ""),
                        role=f"instruction of stage {i}", name=f"stage{i}") for i in range(stages)]

    async def run() -> dict[str, int]:
        traces = []
        for b in range(batch):
            with Tape(f"ex{b}") as tape:
                value: Variable = Variable(f"question {b}", role="question")
                for i in range(stages):
                    value = await LLMCall(engines["forward"], params[i], name=f"stage{i}").acall(value)
                loss = MetricLoss(_wrong)(value, b)
            traces.append(ExampleTrace(f"ex{b}", value, loss, Graph(tape.variables + [value, loss])))
        n0 = len(backend.requests)
        result = await credit.assign(traces, params, engines["credit"])
        n1 = len(backend.requests)
        await optimizer.step(params, result, engines["optimizer"], step=1)
        credit_requests, optimizer_requests = backend.requests[n0:n1], backend.requests[n1:]
        return {"credit": len(credit_requests), "optimizer": len(optimizer_requests),
                "credit_chars": _chars(credit_requests), "optimizer_chars": _chars(optimizer_requests)}

    return asyncio.run(run())


CONTEXT_PAIR = "backprop+tgd(example_context)"  # the workload pair run again with TGD's example context on
PAIRS_ORDER = [(c, o) for c in CREDIT for o in OPTIMIZERS]
STAGES = (1, 3, 6)
SCRIPTED_BATCH = 3


def scripted_figures() -> dict[str, Any]:
    """Calls per step (1-, 3-, 6-stage) and prompt characters per step (3-stage; short and long values), per pair."""
    calls, short, long = {}, {}, {}
    for c, o in PAIRS_ORDER:
        cells = [measure(c, o, s, SCRIPTED_BATCH) for s in STAGES]
        if cells[0] is None:
            continue
        calls[f"{c}+{o}"] = cells
        short[f"{c}+{o}"] = cells[1]
        long[f"{c}+{o}"] = measure(c, o, 3, SCRIPTED_BATCH, LONG_INSTRUCTION, LONG_OUTPUT)
    return {"calls": calls, "short": short, "long": long}


@contextlib.contextmanager
def tgd_options(**options: Any) -> Iterator[bool]:
    """While open, every TGD is built with `options` unless its caller sets them (the workloads build TGD() bare);
    yields False, changing nothing, when this code's TGD does not take them (an older checkout)."""
    from textgrad_core.optimizers import TGD
    original = TGD.__init__
    if not set(options) <= set(inspect.signature(original).parameters):
        yield False
        return

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**options, **kwargs})

    TGD.__init__ = init  # type: ignore[method-assign]
    try:
        yield True
    finally:
        TGD.__init__ = original  # type: ignore[method-assign]


def workload_figures() -> dict[str, Any]:
    """Prompt tokens per phase, averaged over steps, of each benchmark workload x pair at 0 ms (one mock server);
    also backprop+tgd with TGD's example context on (issue 11's option), where this code has it."""
    from benchmarks.calllog import read_log
    from benchmarks.mock_server import MockServer
    from benchmarks.spec import WORKLOADS
    from benchmarks.workloads import PAIRS, run_workload

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "calls.jsonl"
        with MockServer(log) as server:
            async def all_runs() -> list[tuple[str, dict[str, Any]]]:
                # One event loop for every run: the SDK's connections close on the loop that opened them.
                runs = [(f"{key} {pair}", await run_workload(spec, pair, server.base_url))
                        for key, spec in WORKLOADS.items() for pair in PAIRS]
                with tgd_options(example_context=True) as available:
                    if available:
                        runs += [(f"{key} {CONTEXT_PAIR}", await run_workload(spec, "backprop+tgd", server.base_url))
                                 for key, spec in WORKLOADS.items()]
                return runs
            runs = asyncio.run(all_runs())
        records = read_log(log)
    for name, run in runs:
        phases = {"forward": 0, "credit": 0, "optimizer": 0}
        for step in run["phases"]:
            for phase in phases:  # a judge call is part of the forward phase (the loss of the example)
                a, b = step[phase]
                phases[phase] += sum(r.get("prompt_tokens", 0) for r in records if a <= r["t_start"] <= b)
        out[name] = {phase: round(n / len(run["phases"])) for phase, n in phases.items()}
    return out


def figures() -> dict[str, Any]:
    """Every figure of this benchmark, on the code this process imports."""
    return {"scripted": scripted_figures(), "workloads": workload_figures()}


def figures_of_checkout(root: str) -> dict[str, Any]:
    """`figures()` on another checkout's code: this file, copied outside any package, run with that checkout first."""
    with tempfile.TemporaryDirectory() as tmp:
        probe, out = Path(tmp) / "credit_calls_probe.py", Path(tmp) / "figures.json"
        shutil.copy(__file__, probe)
        env = {**os.environ, "PYTHONPATH": str(Path(root).resolve())}
        proc = subprocess.run([sys.executable, str(probe), "--json", str(out)], cwd=root, env=env,
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"measuring {root} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return json.loads(out.read_text())


def tokens(chars: int) -> int:
    """~tokens of `chars` characters (characters / 4, rounded up)."""
    return -(-chars // 4)


def calls_table(fig: dict[str, Any]) -> str:
    """The markdown table of measured calls per step."""
    rows = ["| credit | optimizer | " + " | ".join(f"{s}-stage (credit + optimizer)" for s in STAGES) + " |",
            "|---|---|" + "---|" * len(STAGES)]
    for pair, cells in fig["scripted"]["calls"].items():
        c, o = pair.split("+")
        rows.append(f"| {c} | {o} | " + " | ".join(f"{m['credit']} + {m['optimizer']} = {m['credit'] + m['optimizer']}"
                                                  for m in cells) + " |")
    return "\n".join(rows)


def _scripted_cell(m: dict[str, int] | None) -> str:
    if m is None:
        return "—"
    ct, ot = tokens(m["credit_chars"]), tokens(m["optimizer_chars"])
    return f"{ct} + {ot} = {ct + ot}"


def prompt_table(fig: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """Prompt ~tokens per step, 3-stage chain, short and long values (credit + optimizer), before -> after."""
    arrow = "before → after " if before else ""
    rows = [f"| credit | optimizer | short values: {arrow}(~tokens, credit + optimizer) | long values: {arrow}"
            f"(~tokens, credit + optimizer) |", "|---|---|---|---|"]
    for pair in fig["scripted"]["short"]:
        c, o = pair.split("+")
        cells = []
        for size in ("short", "long"):
            now = _scripted_cell(fig["scripted"][size][pair])
            cells.append(f"{_scripted_cell(before['scripted'][size].get(pair))} → {now}" if before else now)
        rows.append(f"| {c} | {o} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def workload_table(fig: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """Prompt tokens per step of each benchmark workload, per phase and in total, before -> after."""
    rows = ["| workload | pair | forward (incl. judge) | credit | optimizer | total per step |", "|---|---|---|---|---|---|"]
    for name, now in fig["workloads"].items():
        key, pair = name.split(" ", 1)
        filed = (before or {}).get("workloads", {})
        old = filed.get(name, filed.get(name.replace(CONTEXT_PAIR, "backprop+tgd")))  # vs the filing's default
        cells = []
        for phase in ("forward", "credit", "optimizer", None):
            n = sum(now.values()) if phase is None else now[phase]
            if old is None:
                cells.append(f"{n:,}")
            else:
                o = sum(old.values()) if phase is None else old[phase]
                cells.append(f"{o:,} → {n:,} ({(n - o) / o:+.1%})" if o else f"{o:,} → {n:,}")
        label = "backprop+tgd, `example_context: true`" if pair == CONTEXT_PAIR else pair
        rows.append(f"| {key} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Command line: print the tables (or, with --json, write the figures)."""
    parser = argparse.ArgumentParser(description="Calls and prompt tokens per step, per credit strategy x optimizer.")
    parser.add_argument("--before", default=None, help="another checkout of this repository to measure as 'before'")
    parser.add_argument("--json", default=None, help="write the figures of this code as JSON here, print nothing")
    a = parser.parse_args(argv)
    fig = figures()
    if a.json:
        Path(a.json).write_text(json.dumps(fig))
        return
    before = figures_of_checkout(a.before) if a.before else None
    print(f"LLM calls per optimization step, batch size {SCRIPTED_BATCH}, scripted engine (every example wrong):"
          f"\n\n{calls_table(fig)}")
    print(f"\nPrompt size per optimization step, 3-stage chain, batch size {SCRIPTED_BATCH} (~tokens = characters of all "
          f"messages sent / 4); short values, and long values (each instruction {LONG_INSTRUCTION} characters, each "
          f"stage output {LONG_OUTPUT} characters ending in an 'Answer:' line):\n\n{prompt_table(fig, before)}")
    print(f"\nPrompt tokens per step of the benchmark workloads (benchmarks.workloads against the mock server at "
          f"0 ms; tokens = characters / 4 as the server counts them; mean over the workload's steps):"
          f"\n\n{workload_table(fig, before)}")


if __name__ == "__main__":
    main()
