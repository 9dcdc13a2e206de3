"""Measure LLM calls per optimization step for each credit strategy x optimizer on 1-, 3- and 6-stage pipelines.

Uses the scripted engine (no service): every stage is an LLM call with its own trainable instruction, feeding
the next stage; the last output is scored by an always-wrong metric so every example sends feedback.
Run: `python -m benchmarks.credit_calls` (prints the markdown table used in docs/credit.md).
"""
from __future__ import annotations

import asyncio
import json
import re

from experiments.factory import CREDIT, OPTIMIZERS, build_credit, build_optimizer
from textgrad_core.credit import ExampleTrace
from textgrad_core.engines import EngineSet, LLMRequest, ScriptedBackend
from textgrad_core.errors import ConfigError
from textgrad_core.graph import Graph
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.ops import LLMCall
from textgrad_core.variable import Parameter, Tape, Variable


def _reply(request: LLMRequest) -> str:
    """Scripted replies in the format each kind of call asks for."""
    kind = request.tag.split(":", 1)[0]
    if kind == "optimizer":
        if "<JOINT_UPDATE>" in request.user_text:
            ids = json.loads(re.search(r"<PARAMETERS_JSON>(.*?)</PARAMETERS_JSON>", request.user_text, re.S).group(1))
            return json.dumps({"reasoning": "r", "updates": {pid: f"improved {pid}" for pid in ids}})
        return "<NEW_VALUE>\nimproved\n</NEW_VALUE>"
    if kind == "credit":
        return "Be more specific."
    return "stage output"


def _wrong(prediction, example):
    """Always wrong."""
    return MetricResult(score=0.0, feedback="Wrong: expected 1.")


def measure(credit_name: str, optimizer_name: str, stages: int, batch: int) -> dict[str, int] | None:
    """Credit and optimizer calls of one step; None when the pair is incompatible."""
    credit = build_credit({"name": credit_name})
    try:
        optimizer = build_optimizer({"name": optimizer_name}, credit)
    except ConfigError:
        return None
    backend = ScriptedBackend(reply_fn=_reply)
    engines = EngineSet({"forward": {"provider": "scripted", "model": "s", "cache": {"enabled": False}}}, scripted=backend)
    params = [Parameter(value=f"Instruction of stage {i}.", role=f"instruction of stage {i}", name=f"stage{i}") for i in range(stages)]

    async def run() -> tuple[int, int]:
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
        return n1 - n0, len(backend.requests) - n1

    credit_calls, optimizer_calls = asyncio.run(run())
    return {"credit": credit_calls, "optimizer": optimizer_calls}


def table(stages_list=(1, 3, 6), batch: int = 3) -> str:
    """The markdown table of measured calls per step."""
    rows = ["| credit | optimizer | " + " | ".join(f"{s}-stage (credit + optimizer)" for s in stages_list) + " |",
            "|---|---|" + "---|" * len(stages_list)]
    for c in CREDIT:
        for o in OPTIMIZERS:
            cells = [measure(c, o, s, batch) for s in stages_list]
            if cells[0] is None:
                continue
            rows.append(f"| {c} | {o} | " + " | ".join(f"{m['credit']} + {m['optimizer']} = {m['credit'] + m['optimizer']}" for m in cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(f"LLM calls per optimization step, batch size 3, scripted engine (every example wrong):\n\n{table()}")
