"""Measure LLM calls per optimization step for each credit strategy x optimizer on 1-, 3- and 6-stage pipelines.

Uses the scripted engine (no service): every stage is an LLM call with its own trainable instruction, feeding
the next stage; the last output is scored by an always-wrong metric so every example sends feedback.
Each call's prompt size is measured too: characters of every message sent (system, user and, for re-asks, the
quoted reply) and approximate tokens (characters / 4, no tokenizer is tied to the engine).
Run: `python -m benchmarks.credit_calls` (prints the markdown tables used in docs/credit.md).
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


def prompt_table(stages: int = 3, batch: int = 3, instruction_chars: int = 0, output_chars: int = 0) -> str:
    """The markdown table of prompt characters (and approximate tokens) sent per step, per strategy pair."""
    rows = [f"| credit | optimizer | credit prompts: chars (~tokens) | optimizer prompts: chars (~tokens) | total ~tokens |",
            "|---|---|---|---|---|"]
    for c in CREDIT:
        for o in OPTIMIZERS:
            m = measure(c, o, stages, batch, instruction_chars, output_chars)
            if m is None:
                continue
            cc, oc = m["credit_chars"], m["optimizer_chars"]
            rows.append(f"| {c} | {o} | {cc} (~{-(-cc // 4)}) | {oc} (~{-(-oc // 4)}) | ~{-(-cc // 4) + -(-oc // 4)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(f"LLM calls per optimization step, batch size 3, scripted engine (every example wrong):\n\n{table()}")
    print(f"\nPrompt size per optimization step, 3-stage chain, batch size 3 (characters of all messages sent; "
          f"~tokens = characters / 4), short values:\n\n{prompt_table()}")
    print(f"\nThe same with long values (each instruction {LONG_INSTRUCTION} characters, each stage output "
          f"{LONG_OUTPUT} characters ending in an 'Answer:' line):\n\n{prompt_table(instruction_chars=LONG_INSTRUCTION, output_chars=LONG_OUTPUT)}")
