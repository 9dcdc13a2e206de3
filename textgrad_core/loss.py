"""Losses: turn a system output into a score and feedback in words, itself a Variable of the graph."""
from __future__ import annotations

import re
import string
from typing import Any, Callable, Mapping

from pydantic import BaseModel

from textgrad_core import api, prompts
from textgrad_core.engines import Engine, LLMRequest
from textgrad_core.errors import ConfigError
from textgrad_core.ops import as_variable
from textgrad_core.variable import OpRecord, Variable


class MetricResult(BaseModel):
    """A score in [0, 1] and the reason for it in words."""

    score: float
    feedback: str


class Loss(Variable):
    """A loss Variable: its value is the feedback in words, `score` the score (None when unscored).

    `loss.backward(credit=..., engine=...)` runs credit assignment from this one loss, exactly as
    `textgrad_core.backward([loss], ...)` does; `await loss.abackward(...)` is the async twin.
    """

    def backward(self, credit: Any = "backprop", engine: Engine | None = None, params: Any = None, **options: Any) -> Any:
        """Credit assignment from this loss; returns the CreditResult (and leaves it for an optimizer's step())."""
        return api.backward([self], credit=credit, engine=engine, params=params, **options)

    async def abackward(self, credit: Any = "backprop", engine: Engine | None = None, params: Any = None,
                        **options: Any) -> Any:
        """Async twin of `backward`."""
        return await api.abackward([self], credit=credit, engine=engine, params=params, **options)

    @property
    def scored(self) -> bool:
        return self.score is not None


class MetricLoss:
    """Wraps a Python metric `(prediction, example) -> MetricResult`: exact-match tasks need no judge call."""

    def __init__(self, metric: Callable[[Any, Any], MetricResult], name: str = "metric"):
        self.metric = metric
        self.name = name

    def __call__(self, prediction: Variable, example: Any) -> Loss:
        if prediction.is_error:
            result = MetricResult(score=0.0, feedback=f"The system failed before producing an answer: {prediction.op.error}")
        else:
            result = self.metric(prediction.value, example)
        op = OpRecord(name=self.name, kind="loss", inputs=[("prediction", prediction)],
                      description=(self.metric.__doc__ or "Scores the prediction against the expected answer.").strip())
        loss = Loss(value=result.feedback, role="evaluation of the system's output", op=op)
        loss.score = result.score
        return loss


# "SCORE: 0.8", "Score: 4/5", "score = 1", "Score: 85%", "**Score:** 7 / 10": the last such line wins.
_SCORE = re.compile(r"score\W{0,3}\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)\s*(?:(/)\s*(\d+(?:\.\d+)?)|(%))?", re.IGNORECASE)


def parse_score(text: str, scale: float | None = None) -> float | None:
    """The judge's score in [0, 1], or None when it gave none (or one that cannot be read as a fraction).

    A fraction ("4/5") and a percentage are normalised; a bare number above 1 is divided by `scale` when given
    (e.g. scale=10 for a 0-10 rubric) and is otherwise not guessed at: the loss is then unscored.
    """
    matches = list(_SCORE.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    value = float(m.group(1))
    if m.group(2):
        denominator = float(m.group(3))
        value = value / denominator if denominator else -1.0
    elif m.group(4):
        value /= 100.0
    elif value > 1.0 and scale:
        value /= scale
    return value if 0.0 <= value <= 1.0 else None


JUDGE_FIELDS = ("instruction", "question", "response", "reference")


class JudgeLoss:
    """An LLM judge whose evaluation instruction is itself a Variable (and so can be trained).

    `template` is a user message of your own with named fields among {instruction}, {question}, {response} and
    {reference} ({response} is required); it is checked when the judge is built. The default template shows the
    instruction, the question, the response and (when given) the reference answer. The judge's score is parsed
    from its reply (`parse_score`); a reply without one gives an unscored loss (score None), never a 0.
    """

    def __init__(self, engine: Engine, instruction: Variable | str, name: str = "llm_judge", *,
                 template: str | None = None, system: str | None = None, score_scale: float | None = None):
        self.engine = engine
        self.instruction = as_variable(instruction, "evaluation instruction for the judge")
        self.name = name
        self.template = template
        self.system = prompts.JUDGE_SYSTEM if system is None else system
        self.score_scale = score_scale
        if template is not None:
            try:
                names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
            except ValueError as exc:
                raise ConfigError(f"JudgeLoss template is not a valid format string ({exc}); "
                                  "escape literal braces as '{{' and '}}'.") from None
            unknown = sorted(names - set(JUDGE_FIELDS))
            if unknown:
                raise ConfigError(f"JudgeLoss template uses unknown field(s) {unknown}; "
                                  f"use only {{{'}, {'.join(JUDGE_FIELDS)}}}.")
            if "response" not in names:
                raise ConfigError("JudgeLoss template must contain {response} (where the system's output goes).")

    def _request(self, question: Any, prediction: Variable, reference: Any) -> LLMRequest:
        fields = {"instruction": self.instruction.value, "question": _text(question), "response": prediction.value,
                  "reference": _text(reference)}
        if self.template is not None:
            if reference is None and "{reference}" in self.template:
                raise ConfigError(f"{self.name}: the template uses {{reference}}: pass reference=... to the judge call.")
            user = self.template.format(**fields)
        elif reference is not None:
            user = prompts.JUDGE_USER_WITH_REFERENCE.format(**fields)
        else:
            user = prompts.JUDGE_USER.format(**fields)
        return LLMRequest.chat(user, system=self.system, tag=f"judge:{self.name}")

    def _loss(self, request: LLMRequest, prediction: Variable, text: str) -> Loss:
        op = OpRecord(name=self.name, kind="loss", inputs=[("instruction", self.instruction), ("prediction", prediction)],
                      description="An LLM judge evaluates the prediction.", prompt=[m.model_dump() for m in request.messages])
        loss = Loss(value=text, role="evaluation of the system's output", op=op)
        loss.score = parse_score(text, self.score_scale)
        return loss

    async def acall(self, prediction: Variable, question: Any = "", reference: Any = None) -> Loss:
        """Judge `prediction` (the answer to `question`, against `reference` when given)."""
        request = self._request(question, prediction, reference)
        return self._loss(request, prediction, (await self.engine.acomplete(request)).text)

    def __call__(self, prediction: Variable, question: Any = "", reference: Any = None) -> Loss:
        request = self._request(question, prediction, reference)
        return self._loss(request, prediction, self.engine.complete(request).text)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value.value if isinstance(value, Variable) else value)


__all__ = ["JudgeLoss", "Loss", "MetricLoss", "MetricResult", "parse_score"]
