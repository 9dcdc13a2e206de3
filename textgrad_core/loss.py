"""Losses: turn a system output into a score and feedback in words, itself a Variable of the graph."""
from __future__ import annotations

import re
from typing import Any, Callable

from pydantic import BaseModel

from textgrad_core import prompts
from textgrad_core.engines import Engine, LLMRequest
from textgrad_core.ops import as_variable
from textgrad_core.variable import OpRecord, Variable


class MetricResult(BaseModel):
    """A score in [0, 1] and the reason for it in words."""

    score: float
    feedback: str


class MetricLoss:
    """Wraps a Python metric `(prediction, example) -> MetricResult`: exact-match tasks need no judge call."""

    def __init__(self, metric: Callable[[Any, Any], MetricResult], name: str = "metric"):
        self.metric = metric
        self.name = name

    def __call__(self, prediction: Variable, example: Any) -> Variable:
        if prediction.is_error:
            result = MetricResult(score=0.0, feedback=f"The system failed before producing an answer: {prediction.op.error}")
        else:
            result = self.metric(prediction.value, example)
        op = OpRecord(name=self.name, kind="loss", inputs=[("prediction", prediction)],
                      description=(self.metric.__doc__ or "Scores the prediction against the expected answer.").strip())
        loss = Variable(value=result.feedback, role="evaluation of the system's output", op=op)
        loss.score = result.score
        return loss


_SCORE = re.compile(r"SCORE:\s*([01](?:\.\d+)?)", re.IGNORECASE)


class JudgeLoss:
    """An LLM judge whose evaluation instruction is itself a Variable (and so can be trained)."""

    def __init__(self, engine: Engine, instruction: Variable | str, name: str = "llm_judge"):
        self.engine = engine
        self.instruction = as_variable(instruction, "evaluation instruction for the judge")
        self.name = name

    def _request(self, question: str, prediction: Variable) -> LLMRequest:
        user = prompts.JUDGE_USER.format(instruction=self.instruction.value, question=question, response=prediction.value)
        return LLMRequest.chat(user, system=prompts.JUDGE_SYSTEM, tag=f"judge:{self.name}")

    def _loss(self, request: LLMRequest, prediction: Variable, text: str) -> Variable:
        op = OpRecord(name=self.name, kind="loss", inputs=[("instruction", self.instruction), ("prediction", prediction)],
                      description="An LLM judge evaluates the prediction.", prompt=[m.model_dump() for m in request.messages])
        loss = Variable(value=text, role="evaluation of the system's output", op=op)
        match = _SCORE.search(text)
        loss.score = float(match.group(1)) if match else None
        return loss

    async def acall(self, prediction: Variable, question: str) -> Variable:
        request = self._request(question, prediction)
        return self._loss(request, prediction, (await self.engine.acomplete(request)).text)

    def __call__(self, prediction: Variable, question: str) -> Variable:
        request = self._request(question, prediction)
        return self._loss(request, prediction, self.engine.complete(request).text)
