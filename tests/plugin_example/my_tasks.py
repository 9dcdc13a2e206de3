"""A complete task in a package of your own: is a short product review positive or negative?"""
from __future__ import annotations

from typing import Any

from textgrad_core.engines import EngineSet
from textgrad_core.loss import MetricResult
from textgrad_core.ops import LLMCall, traced
from textgrad_core.task import Example, RubricItem, SimWorld, Splits, Task
from textgrad_core.variable import Parameter, ParameterSet, Variable

REVIEWS = [
    ("The battery lasts two full days and the screen is gorgeous.", "positive"),
    ("Great, another charger that stopped working after a week.", "negative"),
    ("Setup took five minutes and it has worked flawlessly since.", "positive"),
    ("The lid cracked the first time I dropped it on the sofa.", "negative"),
    ("Oh wonderful, the app logs me out every single hour.", "negative"),
    ("Not cheap, but the sound is rich and the bass is tight.", "positive"),
    ("It arrived late, yet support replaced it the same day.", "positive"),
    ("The manual is useless and the buttons stick.", "negative"),
    ("Lovely design, shame it overheats after ten minutes.", "negative"),
    ("My kids use it daily and it still looks brand new.", "positive"),
    ("Five stars for making my commute so much quieter.", "positive"),
    ("Brilliant, the strap snapped on day two.", "negative"),
]


@traced(output_role="sentiment label parsed from the response")
def parse_label(response: str) -> str:
    """The word after the last 'Answer:', lower-cased ('' when there is none)."""
    return response.rsplit("Answer:", 1)[-1].strip().lower() if "Answer:" in response else ""


class MyTask(Task):
    """Classify the sentiment of a product review; exact label match."""

    name = "my_sentiment"
    description = "Sentiment of short product reviews (4 train / 4 val / 4 test)."

    def load_splits(self) -> Splits:
        rows = [Example(id=f"review-{i}", input=text, target=label) for i, (text, label) in enumerate(REVIEWS)]
        return Splits(train=rows[:4], val=rows[4:8], test=rows[8:])

    def initial_parameters(self) -> list[Parameter]:
        return [Parameter(value="Classify the review. End with 'Answer: positive' or 'Answer: negative'.",
                          name="instruction", role="system prompt of the review classifier",
                          constraints=["Keep the final line 'Answer: positive' or 'Answer: negative'."])]

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        llm = LLMCall(engines["forward"], params["instruction"], name="classifier")
        response = await llm.acall(Variable(example.input, role="product review"))
        return parse_label(response)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """Exact label match, with the reason in words."""
        if prediction == example.target:
            return MetricResult(score=1.0, feedback=f"Correct: the review is {example.target}.")
        return MetricResult(score=0.0, feedback=f"Wrong: expected {example.target}, got {prediction!r}.")

    def sim_world(self, splits: Splits) -> SimWorld:
        """For the offline simulator engine only: the answers, and guidance that makes its answers better."""
        every = splits.train + splits.val + splits.test
        return SimWorld(task=self.name, answers={e.input: e.target for e in every},
                        distractors=["positive", "negative"], rubric=[
            RubricItem(key="sarcasm", guidance="Watch for sarcasm: mock praise of a flaw is negative.",
                       keywords=["sarcasm"], hint="it should warn that sarcastic praise is negative"),
            RubricItem(key="verdict", guidance="Weigh the overall verdict, not single positive words.",
                       keywords=["overall verdict"], hint="it should ask for the overall verdict, not single words"),
        ])
