"""GSM8K with chain-of-thought self-consistency (textgrad_core.modules.SelfConsistency): k samples at temperature
> 0, a majority vote over their final numbers, the greedy answer when agreement is below the threshold.

Data: the shipped GSM8K copy (MIT, tasks/data/gsm8k/LICENSE), split as the gsm8k task splits it. Trainable:
`cot.instruction`, `cot.k`, `cot.threshold`.
"""
from __future__ import annotations

from textgrad_core.engines import EngineSet
from textgrad_core.modules.self_consistency import SelfConsistency
from textgrad_core.task import Example, SimWorld, Splits
from textgrad_core.variable import Parameter, ParameterSet, Variable

from tasks.gsm8k import INITIAL_INSTRUCTION, RUBRIC, GSM8KTask, parse_answer
from tasks.validators import answer_line, declare, fraction, whole_number


def final_number(response: str) -> str | None:
    """The number a sample votes for: its 'Answer:' line's last number (else its last number)."""
    return parse_answer(response)[0]


class GSM8KSelfConsistencyTask(GSM8KTask):
    """GSM8K answered by a self-consistency vote; numeric match of the voted answer."""

    name = "gsm8k_sc"

    def __init__(self, k: int = 5, threshold: float = 0.5, temperature: float = 0.7, **options):
        super().__init__(**options)
        self.module = SelfConsistency("cot", instruction=INITIAL_INSTRUCTION, k=k, threshold=threshold,
                                      temperature=temperature, extract=final_number,
                                      instruction_constraints=["Keep the required final line format 'Answer: $VALUE'."])
        self.description = f"GSM8K with self-consistency (k={k}, threshold={threshold}); " + self.description

    def initial_parameters(self) -> list[Parameter]:
        return declare(self.module.parameters(), {"cot.instruction": [answer_line()],
                                                  "cot.k": [whole_number(1, self.module.max_k)],
                                                  "cot.threshold": [fraction()]})

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        question = Variable(example.input, role="grade-school math word problem")
        return await self.module.acall(engines["forward"], question, params)

    def sim_world(self, splits: Splits) -> SimWorld:
        world = super().sim_world(splits)
        return world.model_copy(update={"rubric": [i.model_copy(update={"applies_to": ["cot.instruction"]})
                                                   for i in RUBRIC]})
