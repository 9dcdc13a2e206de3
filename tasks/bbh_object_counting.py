"""BIG-Bench Hard object counting: one LLM call with a trainable instruction, then an answer parser (TextGrad's setup).

Protocols: `strict` (ours: the first integer after the last 'Answer:', exact match) and `textgrad` (TextGrad's
string-based check on the whole response, its starting prompt and parameter role; tasks/protocols/textgrad.py).
"""
from __future__ import annotations

from typing import Any

from tasks.bbh_data import split_bbh
from tasks.protocols import STRICT, answer_format, choose_protocol, textgrad
from tasks.protocols.strict import INTEGER, first_number_after_answer
from tasks.validators import answer_line
from textgrad_core.engines import EngineSet
from textgrad_core.loss import MetricResult
from textgrad_core.ops import LLMCall, traced
from textgrad_core.task import Example, RubricItem, SimWorld, Splits, Task, check_size
from textgrad_core.variable import Parameter, ParameterSet, Variable

INITIAL_INSTRUCTION = (
    "You will answer a reasoning question. Think step by step. The last line of your response should be "
    "of the following format: 'Answer: $VALUE' where VALUE is a numerical value."
)

PROTOCOLS = (STRICT, "textgrad")


def read_integer_answer(response: str) -> str:
    """The first integer after the last 'Answer:' (its own line empty: from the next line); without an 'Answer:',
    the last integer of the response; '' when there is none. 'Answer: 6 (1 + 2 + 3)' reads 6."""
    number, _ = first_number_after_answer(response, INTEGER)
    return number or ""


@traced(output_role="integer answer parsed from the response")
def parse_integer_answer(response: str) -> str:
    """Take the first integer after the last 'Answer:'; without one, the last integer in the response."""
    return read_integer_answer(response)


class ObjectCountingTask(Task):
    """Count the objects of a category in a sentence; exact integer match."""

    name = "bbh_object_counting"
    description = "BIG-Bench Hard object counting (TextGrad split: 50 train / 100 val / 100 test)."

    def __init__(self, data_dir: str | None = None, n_train: int = 50, n_val: int = 100, protocol: str = STRICT):
        check_size("n_train", n_train)
        check_size("n_val", n_val)
        self.protocol = choose_protocol(self.name, protocol, PROTOCOLS)
        self.data_dir = data_dir
        self.n_train = n_train
        self.n_val = n_val

    def load_splits(self) -> Splits:
        """TextGrad's split of the 250 examples: first 50 train, next 100 validation, the rest test."""
        return split_bbh("object_counting", self.data_dir, self.n_train, self.n_val)

    def initial_parameters(self) -> list[Parameter]:
        if self.protocol == "textgrad":
            return [Parameter(value=textgrad.BBH_STARTING_PROMPT, name="instruction", role=textgrad.SYSTEM_PROMPT_ROLE)]
        return [Parameter(value=INITIAL_INSTRUCTION, name="instruction",
                          role="system prompt of the model that answers object-counting questions",
                          constraints=["Keep the required final line format 'Answer: $VALUE'."],
                          validators=[answer_line()])]

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        llm = LLMCall(engines["forward"], params["instruction"], name="counting_llm",
                      output_role="step-by-step answer to the counting question")
        response = await llm.acall(Variable(example.input, role="object-counting question"))
        if self.protocol == "textgrad":  # TextGrad scores the whole response
            return response
        return parse_integer_answer(response)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """strict: exact match of the parsed integer, with the reason in words; textgrad: TextGrad's integer check."""
        if self.protocol == "textgrad":
            return textgrad.integer_check(prediction, example.target)
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
                        base_accuracy=0.45, max_accuracy=0.95, answer_format=answer_format(self.protocol))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "protocol": self.protocol}


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
