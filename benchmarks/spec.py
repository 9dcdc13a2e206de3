"""What every implementation of a benchmark workload shares (ours and the peers'): stdlib only, so the peers'
runners can import it from their own virtual environments.
"""
from __future__ import annotations

from dataclasses import dataclass

# Every judge instruction of the workloads contains this phrase; the mock server classifies judge calls by it.
JUDGE_MARK = "Compare the response with the reference answer"


@dataclass(frozen=True)
class WorkloadSpec:
    """A compound system and its training schedule."""

    key: str
    title: str
    stages: tuple[str, ...]
    batch: int
    steps: int
    judge: bool


WORKLOADS = {
    "a": WorkloadSpec("a", "planner -> solver -> LLM judge", ("planner", "solver"), batch=8, steps=3, judge=True),
    "b": WorkloadSpec("b", "one stage, batch 32", ("solver",), batch=32, steps=1, judge=False),
    "c": WorkloadSpec("c", "6-stage chain, batch 4", tuple(f"stage{i}" for i in range(6)), batch=4, steps=1, judge=False),
}

STAGE_INSTRUCTIONS = {
    "planner": "Write a short plan for solving the problem: which quantities matter and in which order to combine them.",
    "solver": "Solve the problem following the plan if one is given. End with one line 'Answer: <number>'.",
}
JUDGE_INSTRUCTION = (f"{JUDGE_MARK} given after the question. Say what is wrong with the response's reasoning "
                     "and final number, concretely.")


def instruction(stage: str) -> str:
    """The initial instruction of a stage."""
    return STAGE_INSTRUCTIONS.get(stage, f"Carry out stage {stage} of the pipeline and pass the result on.")


def question(step: int, index: int) -> tuple[str, str]:
    """The question and reference answer of one example (a function of its position only)."""
    a, b = 3 + 7 * index + step, 11 + 5 * index
    return (f"A shop has {a} boxes with {b} pencils in each box and sells {a + b} pencils. "
            f"How many pencils are left?", str(a * b - a - b))


def is_exact(prediction: object, reference: str) -> bool:
    """The exact-match metric of workloads (b) and (c): the last line says 'Answer: <reference>'."""
    return str(prediction).strip().splitlines()[-1:] == [f"Answer: {reference}"]
