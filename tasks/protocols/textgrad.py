"""TextGrad's published protocol for prompt optimization (zou-group/textgrad: textgrad/tasks/, evaluation/).

- Object counting and GSM8K are scored by a string-based function on the WHOLE response (no parser op): the
  integer read from the last whitespace-separated token that holds a digit, cut at its first '.', keeping only
  its digits, must equal the integer read the same way from the ground truth (an unreadable text reads 0). So
  "Answer: 7.5" reads 7, "-3" reads 3, and a trailing remark like "Answer: 8 (3 + 5)" reads 5.
- BBH tasks other than object counting (word sorting) are scored by an LLM judge (the evaluation engine) that
  sees the question, the ground truth and the response and answers 0 or 1 inside <ACCURACY> tags.
- The starting system prompt of every BBH task (word sorting included) asks for "a numerical value"; GSM8K's
  says "mathemetical" (sic). The question is sent as is (BBH) or as "Question: <question>" (GSM8K); the
  trainable system prompt's role is the one the paper's script gives it.

The prompts below are the protocol's data, so they are reproduced exactly; the code is ours.
"""
from __future__ import annotations

from typing import Any

from textgrad_core.engines import LLMRequest
from textgrad_core.loss import Loss, MetricResult
from textgrad_core.variable import OpRecord, Variable

BBH_STARTING_PROMPT = (
    "You will answer a reasoning question. Think step by step. The last line of your response should be of the "
    "following format: 'Answer: $VALUE' where VALUE is a numerical value."
)
GSM8K_STARTING_PROMPT = (
    "You will answer a mathemetical reasoning question. Think step by step. The last line of your response should "
    "be of the following format: 'Answer: $VALUE' where VALUE is a numerical value."
)
SYSTEM_PROMPT_ROLE = ("structured system prompt to a somewhat capable language model that specifies the behavior "
                      "and strategies for the QA task")
CHECK_PURPOSE = "The runtime of string-based function that checks if the prediction is correct."

JUDGE_SYSTEM = "You are an evaluation system that compares two variables."
JUDGE_INSTRUCTION = (
    "Below is a question from a question-answering task, the ground truth answer, and reasoning with the final "
    "prediction. Is the final prediction correct, i.e. the same as the ground truth answer? Say only 1 (yes) or 0 "
    "(no). Return your response within <ACCURACY> </ACCURACY> tags. e.g.<ACCURACY> 0 </ACCURACY> or <ACCURACY> 1 "
    "</ACCURACY>"
)
JUDGE_FIELDS = ("Question for the task", "Ground truth answer", "Reasoning and prediction from the language model")


def format_gsm8k_question(question: str) -> str:
    """GSM8K's input as TextGrad sends it."""
    return f"Question: {question}"


def read_integer(text: Any) -> int:
    """TextGrad's integer reading of a text (see the module docstring); 0 when none can be read."""
    tokens = [token for token in str(text).strip().split() if any(ch.isdigit() for ch in token)]
    if not tokens:
        return 0
    head = tokens[-1].split(".")[0]
    digits = "".join(ch for ch in head if ch.isdigit())
    try:
        return int(digits)
    except ValueError:  # no ASCII-convertible digit before the '.', e.g. '.5' or a superscript
        return 0


def integer_check(prediction: Any, target: Any) -> MetricResult:
    """TextGrad's string-based check: 1 when both integer readings agree, else 0; the feedback shows its inputs."""
    got, want = read_integer(prediction), read_integer(target)
    score = float(got == want)
    # TextGrad's backward sees the function's purpose, its inputs and its output: the feedback carries the same.
    feedback = (f"{CHECK_PURPOSE} Inputs: prediction = {_quote(prediction)} (read as {got}), ground truth answer = "
                f"{_quote(target)} (read as {want}). Output: {int(score)} ({'correct' if score else 'wrong'}).")
    return MetricResult(score=score, feedback=feedback)


def judge_request(question: str, target: str, response: str, tag: str) -> LLMRequest:
    """The judge call TextGrad makes for a BBH answer: its instruction, then the three labelled fields."""
    values = dict(zip(JUDGE_FIELDS, (question, target, response)))
    user = "\n".join([JUDGE_INSTRUCTION] + [f"**{field}**: {value}" for field, value in values.items()])
    return LLMRequest.chat(user, system=JUDGE_SYSTEM, tag=f"judge:{tag}")


def read_accuracy(reply: str) -> float | None:
    """The judge's verdict: the integer between the first '<ACCURACY>' and the next '</ACCURACY>' (0 or 1), else None."""
    head, sep, rest = reply.partition("<ACCURACY>")
    if not sep:
        return None
    inside = rest.split("</ACCURACY>")[0].strip()
    try:
        value = int(inside)
    except ValueError:
        return None
    return float(value) if value in (0, 1) else None


async def judge_loss(engine: Any, prediction: Variable, question: str, target: str, name: str) -> Loss:
    """TextGrad's LLM-judge loss: the judge's reply is the loss's value, its <ACCURACY> verdict the score.

    A reply without a readable 0/1 verdict gives an unscored loss (TextGrad's own script would stop with an error).
    """
    request = judge_request(question, target, str(prediction.value), name)
    text = (await engine.acomplete(request)).text
    op = OpRecord(name=name, kind="loss", inputs=[("prediction", prediction)],
                  description="TextGrad's LLM judge compares the prediction with the ground truth answer.",
                  prompt=[m.model_dump() for m in request.messages])
    loss = Loss(value=text, role="evaluation of the a prediction", op=op)
    loss.score = read_accuracy(text)
    return loss


def _quote(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return f"'{text[:limit]}...'" if len(text) > limit else f"'{text}'"


__all__ = ["BBH_STARTING_PROMPT", "GSM8K_STARTING_PROMPT", "JUDGE_INSTRUCTION", "JUDGE_SYSTEM", "SYSTEM_PROMPT_ROLE",
           "format_gsm8k_question", "integer_check", "judge_loss", "judge_request", "read_accuracy", "read_integer"]
