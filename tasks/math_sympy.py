"""Linear equations solved by an LLM paired with a symbolic checker (textgrad_core.modules.SymbolicChecker): the
model proposes x, sympy substitutes it into the equation, a rejected answer is retried with the checker's message.

Data: generated here (no file), seeded and deterministic: `a*x + b = c` and `a*(x - b) = c - d*x` equations with
whole-number solutions, written by this project (MIT, like the project). Trainable: `solver.instruction`,
`solver.retries`. Score: the final answer equals the solution.
"""
from __future__ import annotations

import random
from typing import Any

from textgrad_core.engines import EngineSet
from textgrad_core.loss import MetricResult
from textgrad_core.modules.symbolic import SymbolicChecker
from textgrad_core.task import Example, RubricItem, SimWorld, Splits, Task, check_fits, check_size
from textgrad_core.variable import Parameter, ParameterSet, Variable

from tasks.gsm8k import numbers_equal, parse_answer
from tasks.validators import answer_line, declare, whole_number

INITIAL_INSTRUCTION = ("Solve the equation for x. The last line of your response should be of the form "
                       "'Answer: <value>'.")
POOL = 240


def equations(count: int, seed: int = 0) -> list[Example]:
    """`count` equations with whole-number solutions, ids 'eq-<i>' (the same list for the same seed)."""
    rng = random.Random(seed)
    out: list[Example] = []
    while len(out) < count:
        x, a, b = rng.randint(-12, 12), rng.randint(2, 9), rng.randint(1, 20)
        if rng.random() < 0.5:
            spec = f"{a}*x + {b} = {a * x + b}"
        else:
            d = rng.randint(1, 5)
            spec = f"{a}*(x - {b}) = {a * (x - b) + d * x} - {d}*x"
        text = f"Solve for x: {spec.replace('*', ' ')}"
        if all(e.input != text for e in out):
            out.append(Example(id=f"eq-{len(out)}", input=text, target=str(x), meta={"equation": spec}))
    return out


class MathSympyTask(Task):
    """Solve one linear equation; an LLM proposes, sympy checks, the checker's message drives retries."""

    name = "math_sympy"

    def __init__(self, n_train: int = 40, n_val: int = 40, n_test: int = 80, seed: int = 0, retries: int = 2):
        for option, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            check_size(option, value)
        check_fits({"n_train": n_train, "n_val": n_val, "n_test": n_test}, POOL, f"the {POOL} generated equations")
        self.n_train, self.n_val, self.n_test, self.seed = n_train, n_val, n_test, seed
        self.module = SymbolicChecker("solver", instruction=INITIAL_INSTRUCTION, retries=retries)
        self.description = (f"Generated linear equations (seed {seed}): {n_train} train / {n_val} val / {n_test} test; "
                            "LLM + sympy checker")

    def load_splits(self) -> Splits:
        """The first n_train generated equations train, the next n_val validation, the next n_test test."""
        rows = equations(POOL, self.seed)
        a, b = self.n_train, self.n_train + self.n_val
        return Splits(train=rows[:a], val=rows[a:b], test=rows[b:b + self.n_test])

    def initial_parameters(self) -> list[Parameter]:
        return declare(self.module.parameters(), {
            "solver.instruction": [answer_line("Answer: <value>", "the symbolic checker reads the value after it")],
            "solver.retries": [whole_number(0, self.module.max_retries)]})

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        problem = Variable(example.input, role="equation to solve for x")
        spec = Variable(example.meta["equation"], role="the equation in sympy syntax")
        return await self.module.acall(engines["forward"], problem, spec, params)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """The final 'Answer:' value equals the solution; the checker's last verdict is quoted."""
        text = str(prediction)
        got = parse_answer(text.split("\n(Checker")[0].replace("x =", ""))[0]
        checker = text.rsplit("(Checker", 1)[-1].rstrip(")") if "(Checker" in text else ""
        if got is not None and numbers_equal(got, str(example.target)):
            return MetricResult(score=1.0, feedback=f"Correct: x = {example.target}.")
        return MetricResult(score=0.0, feedback=f"Wrong: expected x = {example.target}, got {got}. Checker{checker}")

    def sim_world(self, splits: Splits) -> SimWorld:
        every = splits.train + splits.val + splits.test
        return SimWorld(task=self.name, rubric=RUBRIC, answers={e.input: e.target for e in every},
                        base_accuracy=0.35, max_accuracy=0.95, answer_kind="int")


RUBRIC = [
    RubricItem(key="isolate", guidance="Move every term with x to one side and the numbers to the other before dividing.",
               keywords=["every term with x"], hint="it should ask to move every term with x to one side first",
               echo="(Collected every term with x on one side.)", applies_to=["solver.instruction"]),
    RubricItem(key="expand", guidance="Expand brackets before collecting terms.", keywords=["expand brackets"],
               hint="it should ask to expand brackets before collecting terms", echo="(Expanded brackets.)",
               applies_to=["solver.instruction"]),
    RubricItem(key="substitute", guidance="Substitute the value back into the equation to check it.",
               keywords=["substitute the value back"], hint="it should ask to substitute the value back to check it",
               echo="(Substituted the value back.)", applies_to=["solver.instruction"]),
]
