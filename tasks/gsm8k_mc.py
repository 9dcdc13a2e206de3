"""GSM8K as four-option multiple choice, answered by a Medprompt-style ensemble (textgrad_core.modules.Medprompt):
kNN-selected demos from a pool of solved TRAINING examples, chain of thought, choice-shuffled members and a vote.

Options: the answer and three nearby whole numbers, in an order fixed by the question (hash-seeded). The demos pool
starts as the first `pool_size` training examples with their reference answer (`allowed_ids`: the training split,
so the validators refuse any other id); the bootstrap optimizer adds the model's own successful chains of thought
(Medprompt's self-generated CoT). Data: the shipped GSM8K copy (MIT, tasks/data/gsm8k/LICENSE), split as the gsm8k
task splits it. Trainable: `medprompt.instruction`, `medprompt.demos`, `medprompt.ensemble`.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any

from textgrad_core.engines import EngineSet
from textgrad_core.loss import MetricResult
from textgrad_core.modules.medprompt import LETTERS, Medprompt, options_block, shuffled
from textgrad_core.task import Example, SimWorld, Splits
from textgrad_core.variable import Parameter, ParameterSet, Variable

from tasks.gsm8k import RUBRIC, GSM8KTask, gsm8k_metric
from tasks.validators import answer_line, declare


def options_for(question: str, answer: str) -> list[str]:
    """The answer and three distinct nearby whole numbers, in an order seeded by the question."""
    rng = random.Random(int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big"))
    value = int(float(answer))
    wrong: list[int] = []
    while len(wrong) < 3:
        candidate = value + rng.choice([-1, 1]) * rng.randint(1, max(3, abs(value) // 4 + 1))
        if candidate != value and candidate not in wrong:
            wrong.append(candidate)
    options = [str(value)] + [str(w) for w in wrong]
    rng.shuffle(options)
    return options


class GSM8KMedpromptTask(GSM8KTask):
    """GSM8K multiple choice through a Medprompt ensemble; numeric match of the voted option."""

    name = "gsm8k_mc"

    def __init__(self, ensemble: int = 5, shots: int = 3, pool_size: int = 8, **options: Any):
        super().__init__(**options)
        self.ensemble, self.shots, self.pool_size = ensemble, shots, pool_size
        self.description = f"GSM8K 4-option multiple choice, Medprompt ensemble of {ensemble}; " + self.description

    def module(self, splits: Splits) -> Medprompt:
        """The ensemble, its pool and allowed ids taken from the training split only."""
        pool = [{"id": e.id, "input": e.input, "output": f"Answer: {e.target}"} for e in splits.train[: self.pool_size]]
        return Medprompt("medprompt", pool=pool, allowed_ids=[e.id for e in splits.train], shots=self.shots,
                         ensemble=self.ensemble)

    def initial_parameters(self) -> list[Parameter]:
        # The module declares the demos' and the ensemble's own checks; the answer line is this task's parser's.
        return declare(self.module(self.checked_splits()).parameters(),
                       {"medprompt.instruction": [answer_line("Answer: <letter>", "the vote reads the letter after it")]})

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        module = Medprompt("medprompt", shots=self.shots)  # the pool lives in the parameter, not the module
        return await module.acall(engines["forward"], example.input, options_for(example.input, example.target), params)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """The voted option equals the answer."""
        return gsm8k_metric(prediction, example)

    def sim_world(self, splits: Splits) -> SimWorld:
        """The simulator answers the letter of the right option in each member's shuffled order."""
        every = splits.train + splits.val + splits.test
        answers = {}
        for e in every:
            options = options_for(e.input, e.target)
            for member in range(9):
                order = shuffled(e.input, options, member)
                letter = LETTERS[[options[i] for i in order].index(str(int(float(e.target))))]
                answers[f"{e.input}\n\nOptions:\n{options_block(options, order)}"] = letter
        rubric = [i.model_copy(update={"applies_to": ["medprompt.instruction"]}) for i in RUBRIC]
        return SimWorld(task=self.name, rubric=rubric, answers=answers, base_accuracy=0.4, max_accuracy=0.9,
                        answer_kind="text", distractors=list(LETTERS[:4]))
