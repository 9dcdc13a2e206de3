"""BIG-Bench Hard object counting: one LLM call with a trainable instruction, then an answer parser (TextGrad's setup)."""
from __future__ import annotations

import re
from typing import Any

from tasks.bbh_data import split_bbh
from textgrad_core.engines import EngineSet
from textgrad_core.loss import MetricResult
from textgrad_core.ops import LLMCall, traced
from textgrad_core.task import Example, RubricItem, SimWorld, Splits, Task, check_size
from textgrad_core.variable import Parameter, ParameterSet, Variable

INITIAL_INSTRUCTION = (
    "You will answer a reasoning question. Think step by step. The last line of your response should be "
    "of the following format: 'Answer: $VALUE' where VALUE is a numerical value."
)

_ANSWER = re.compile(r"answer\s*:\s*\$?(-?\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+")


@traced(output_role="integer answer parsed from the response")
def parse_integer_answer(response: str) -> str:
    """Take the integer after the last 'Answer:'; without one, the last integer in the response."""
    found = _ANSWER.findall(response)
    if found:
        return found[-1]
    numbers = _NUMBER.findall(response)
    return numbers[-1] if numbers else ""


class ObjectCountingTask(Task):
    """Count the objects of a category in a sentence; exact integer match."""

    name = "bbh_object_counting"
    description = "BIG-Bench Hard object counting (TextGrad split: 50 train / 100 val / 100 test)."

    def __init__(self, data_dir: str | None = None, n_train: int = 50, n_val: int = 100):
        check_size("n_train", n_train)
        check_size("n_val", n_val)
        self.data_dir = data_dir
        self.n_train = n_train
        self.n_val = n_val

    def load_splits(self) -> Splits:
        """TextGrad's split of the 250 examples: first 50 train, next 100 validation, the rest test."""
        return split_bbh("object_counting", self.data_dir, self.n_train, self.n_val)

    def initial_parameters(self) -> list[Parameter]:
        return [Parameter(value=INITIAL_INSTRUCTION, name="instruction",
                          role="system prompt of the model that answers object-counting questions",
                          constraints=["Keep the required final line format 'Answer: $VALUE'."])]

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        llm = LLMCall(engines["forward"], params["instruction"], name="counting_llm",
                      output_role="step-by-step answer to the counting question")
        response = await llm.acall(Variable(example.input, role="object-counting question"))
        return parse_integer_answer(response)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """Exact integer match, with the reason in words."""
        got = str(prediction).strip()
        if not got:
            return MetricResult(score=0.0, feedback=f"Wrong: expected {example.target}, but no integer could be "
                                "parsed from the response; the 'Answer: $VALUE' line was missing.")
        if got == example.target:
            return MetricResult(score=1.0, feedback=f"Correct: expected {example.target}, got {got}.")
        return MetricResult(score=0.0, feedback=f"Wrong: expected {example.target}, got {got}.")

    def sim_world(self, splits: Splits) -> SimWorld:
        every = splits.train + splits.val + splits.test
        return SimWorld(task=self.name, rubric=RUBRIC, answers={e.input: e.target for e in every},
                        base_accuracy=0.45, max_accuracy=0.95)


RUBRIC = [
    RubricItem(key="enumerate", guidance="Before answering, list every object mentioned together with its quantity.",
               keywords=["list every object", "list each object", "enumerate"],
               hint="it should ask to list every object with its quantity before adding them up",
               echo="(Listed every object with its quantity.)"),
    RubricItem(key="category", guidance="Count only the items that belong to the category asked about.",
               keywords=["category asked", "belong to the category", "only the items that belong"],
               hint="it should say to count only the items of the category asked about",
               echo="(Kept only the items of the asked category.)"),
    RubricItem(key="number_words", guidance="Convert number words such as 'two' or 'four' into quantities.",
               keywords=["number words", "convert number"],
               hint="it should say to convert number words like 'two' into quantities",
               echo="(Converted number words into quantities.)"),
    RubricItem(key="double_check", guidance="Add the quantities one at a time and double-check the total.",
               keywords=["double-check", "double check"],
               hint="it should ask to add the quantities one at a time and double-check the total",
               echo="(Double-checked the sum.)"),
]
