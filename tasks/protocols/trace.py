"""Trace's published BBH protocol (microsoft/Trace: examples/bbh/run_prompt_bigbench_trace.py).

- The system: a trainable prompt template (a DSPy-style signature ending in 'Answer:'), the language model called
  with the system prompt "You are a helpful assistant.\\n", and a trainable `extract_answer` whose starting code
  takes the text after the FIRST 'Answer:' (an error when there is none).
- The LLM call asks for a JSON object (`response_format={"type": "json_object"}`) and, when the provider refuses,
  repeats the call without it and with max_tokens=1024. OpenAI refuses JSON mode unless a message mentions JSON,
  which the starting template does not: so a call here asks for a JSON object exactly when its prompt mentions
  JSON, and is otherwise the plain call Trace ends up sending.
- The score: when the target contains an option like '(B)', the last '(X)' of the extracted answer must equal
  it; otherwise the extracted answer must equal the target exactly (no stripping, no case folding).
- The feedback is Trace's two sentences: "correct, no need to change anything" or "wrong, we expect <target>".

The prompts and feedback sentences are the protocol's data, so they are reproduced exactly; the code is ours.
"""
from __future__ import annotations

import re
from typing import Any

from textgrad_core.engines import LLMRequest
from textgrad_core.engines.types import ResponseFormat
from textgrad_core.loss import MetricResult
from textgrad_core.ops import LLMCall
from textgrad_core.variable import Variable

SYSTEM_PROMPT = "You are a helpful assistant.\n"
MAX_TOKENS = 1024

# Trace's template, with its positional '{}' slot written as our named slot.
TEMPLATE = (
    "\n"
    "Given the fields `question`, produce the fields `answer`.\n"
    "\n"
    "---\n"
    "\n"
    "Follow the following format.\n"
    "\n"
    "Question: \n"
    "Answer: \n"
    "\n"
    "---\n"
    "Question: {question}\n"
    "Answer:\n"
)
TEMPLATE_ROLE = ("[ParameterNode] This is the Prompt Template to the LLM. Need to include information about what the "
                 "format of answers LLM should output. They can be (A)/(B), a number like 8, or a string, or Yes/No.")

EXTRACT_CODE = '''def extract_answer(response: str) -> str:
    """Read the response (thoughts, deliberation and an answer) and return the answer in the exact format the
    evaluator wants: an option like (A)/(B), a number like 8, a string, or Yes/No."""
    answer = response.split("Answer:")[1].strip()
    return answer'''
EXTRACT_ROLE = ("Python source of extract_answer(response): it reads the response, which can contain additional "
                "thought, deliberation and an answer, and returns the answer in the exact format the evaluator "
                "wants to see: (A)/(B), a number like 8, a string, or Yes/No")

_OPTION = re.compile(r"\([A-Z]\)")


def score(prediction: Any, target: str) -> float:
    """Trace's BBH metric: the last '(X)' of the prediction equals an option target, else exact string equality."""
    if prediction is None:
        return 0.0
    if _OPTION.search(target):
        found = _OPTION.findall(str(prediction))
        return float(bool(found) and found[-1] == target)
    return float(prediction == target)


def metric(prediction: Any, target: str) -> MetricResult:
    """Trace's score with Trace's feedback sentences."""
    if score(prediction, target):
        return MetricResult(score=1.0, feedback="The answer is correct! No need to change anything.")
    return MetricResult(score=0.0, feedback=(
        f"The answer is wrong. We expect the output of your answer to be \"{target}\". Please modify the prompt "
        "and relevant parts of the program to help LLM produce the right answer."))


class TraceLLMCall(LLMCall):
    """The LLM call of Trace's BBH program: its system prompt, JSON mode only when the prompt mentions JSON."""

    def __init__(self, engine: Any, *, name: str, output_role: str):
        super().__init__(engine, SYSTEM_PROMPT, name=name, output_role=output_role, max_tokens=MAX_TOKENS)

    def _request(self, user: Variable, sample_index: int) -> LLMRequest:
        request = super()._request(user, sample_index)
        if any("json" in m.content.lower() for m in request.messages):
            return request.model_copy(update={"response_format": ResponseFormat(type="json_object")})
        return request


__all__ = ["EXTRACT_CODE", "SYSTEM_PROMPT", "TEMPLATE", "TEMPLATE_ROLE", "TraceLLMCall", "metric", "score"]
