"""BIG-Bench Hard, any of its 27 sub-tasks, in Trace's setup: a trainable prompt template and answer-extraction code.

The system: the prompt template (a trainable text Parameter with a `{question}` slot) is filled with the question by
a traced op, the language model answers, and the function `extract_answer(response)` -- whose source code is a
trainable `kind="code"` Parameter -- turns the response into the final answer, run in the sandbox. Credit reaches
both the template (through the render op) and the code (through the sandboxed call).

Protocols: `strict` (ours: see `BBHTask.metric`) and `trace` (Trace's: its template, system prompt, starting
extraction code, metric and feedback sentences; tasks/protocols/trace.py).
"""
from __future__ import annotations

import re
from typing import Any

from tasks.bbh_data import SUBTASKS, split_bbh
from tasks.protocols import STRICT, answer_format, choose_protocol
from tasks.protocols import trace as trace_protocol
from tasks.validators import answer_line, defines, slot_once
from textgrad_core.engines import EngineSet
from textgrad_core.errors import ConfigError
from textgrad_core.loss import MetricResult
from textgrad_core.ops import LLMCall, call_code, traced
from textgrad_core.sandbox import SandboxLimits
from textgrad_core.task import Example, RubricItem, SimWorld, Splits, Task, check_size
from textgrad_core.variable import Parameter, ParameterSet, Variable

SLOT = "{question}"

# Trace's initial template (a DSPy-style signature), with the question slot named.
INITIAL_TEMPLATE = (
    "Given the fields `question`, produce the fields `answer`.\n\n"
    "---\n\n"
    "Follow the following format.\n\n"
    "Question: the question to answer\n"
    "Answer: the answer, e.g. an option like (A), a number, True/False, Yes/No or a short phrase\n\n"
    "---\n\n"
    f"Question: {SLOT}\n"
    "Answer:"
)

EXTRACT_FUNCTION = "extract_answer"

INITIAL_EXTRACT_CODE = '''def extract_answer(response: str) -> str:
    """Return the final answer: the text after the last 'Answer:' in the response (all of it if there is none)."""
    return response.split("Answer:")[-1].strip()'''

_OPTION = re.compile(r"^\([A-Z]\)$")
_OPTION_IN_TEXT = re.compile(r"\(([A-Z])\)")
# A bare option letter is the whole answer ('B', 'B.', 'B)', '(B'), never the first word of a sentence ('A date...').
_BARE_OPTION = re.compile(r"\(?([A-Z])[.):]?")
PROTOCOLS = (STRICT, "trace")
_BINARY = {"true": "false", "false": "true", "yes": "no", "no": "yes", "valid": "invalid", "invalid": "valid"}


@traced(output_role="prompt sent to the model: the template filled in with the question")
def render_prompt(template: str, question: str) -> str:
    """Fill the template's {question} slot with the question."""
    if SLOT not in template:
        raise ValueError(f"the template has no {SLOT} slot, so the model never sees the question")
    return template.replace(SLOT, question)


def normalize_answer(text: Any) -> str:
    """Strip whitespace, quotes and a final period; collapse inner whitespace; lowercase."""
    cleaned = " ".join(str(text).split()).strip().strip("'\"`").strip()
    return cleaned.rstrip(".").strip().lower()


def chosen_option(text: Any) -> str | None:
    """The option letter an answer names: the last '(X)' in it, else a bare letter that is the whole answer ('B',
    'B.', 'B)'); None otherwise."""
    found = _OPTION_IN_TEXT.findall(str(text))
    if found:
        return f"({found[-1]})"
    bare = _BARE_OPTION.fullmatch(str(text).strip())
    return f"({bare.group(1)})" if bare else None


def _quote(text: Any, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return f"'{text[:limit]}...'" if len(text) > limit else f"'{text}'"


class BBHTask(Task):
    """One BIG-Bench Hard sub-task; exact match after light normalization."""

    name = "bbh"

    def __init__(self, subtask: str = "date_understanding", data_dir: str | None = None, n_train: int = 15,
                 n_val: int = 5, timeout_s: float = 5.0, protocol: str = STRICT):
        self.protocol = choose_protocol(self.name, protocol, PROTOCOLS)
        if data_dir is None and subtask not in SUBTASKS:
            raise ConfigError(f"Unknown BBH sub-task '{subtask}'. Known sub-tasks: {', '.join(SUBTASKS)}.")
        check_size("n_train", n_train)
        check_size("n_val", n_val)
        self.subtask = subtask
        self.data_dir = data_dir
        self.n_train = n_train
        self.n_val = n_val
        self.limits = SandboxLimits(timeout_s=timeout_s)
        self.description = (f"BIG-Bench Hard '{subtask}' in Trace's setup: trainable prompt template and answer-"
                            f"extraction code (split: first {n_train} train / next {n_val} val / rest test).")

    def load_splits(self) -> Splits:
        """Trace's split of a sub-task: the first 15 examples train, the next 5 validation, the rest test."""
        return split_bbh(self.subtask, self.data_dir, self.n_train, self.n_val)

    def initial_parameters(self) -> list[Parameter]:
        if self.protocol == "trace":
            return [
                Parameter(value=trace_protocol.TEMPLATE, name="prompt_template", role=trace_protocol.TEMPLATE_ROLE,
                          constraints=[f"Keep the slot {SLOT} exactly once: it is where the question goes."],
                          validators=[slot_once(SLOT)]),
                Parameter(value=trace_protocol.EXTRACT_CODE, name="extract_answer", kind="code",
                          role=trace_protocol.EXTRACT_ROLE,
                          constraints=[f"Define a function {EXTRACT_FUNCTION}(response: str) -> str."],
                          validators=[defines(EXTRACT_FUNCTION)]),
            ]
        return [
            Parameter(value=INITIAL_TEMPLATE, name="prompt_template",
                      role="prompt template sent to the language model; {question} is replaced by the question. It "
                           "should say what form the answer takes: an option like (A), a number, True/False, Yes/No "
                           "or a short phrase",
                      constraints=[f"Keep the slot {SLOT} exactly once: it is where the question goes.",
                                   "Keep asking for a final line 'Answer: ...', which the extraction code reads."],
                      validators=[slot_once(SLOT), answer_line("Answer: ...", "the extraction code reads it")]),
            Parameter(value=INITIAL_EXTRACT_CODE, name="extract_answer", kind="code",
                      role="Python source of extract_answer(response), which reads the model's response (reasoning "
                           "and an answer) and returns only the final answer",
                      constraints=[f"Define a function {EXTRACT_FUNCTION}(response: str) -> str.",
                                   "Use only the Python standard library; the code runs in a sandbox."],
                      validators=[defines(EXTRACT_FUNCTION)]),
        ]

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        prompt = render_prompt(params["prompt_template"], Variable(example.input, role="question of the task"))
        if prompt.is_error:  # the model would only see an error message: stop here, the error reaches the feedback
            return prompt
        if self.protocol == "trace":
            llm: LLMCall = trace_protocol.TraceLLMCall(engines["forward"], name="answer_llm",
                                                       output_role="response of the model: reasoning and an answer")
        else:
            llm = LLMCall(engines["forward"], None, name="answer_llm",
                          output_role="response of the model: reasoning and an answer")
        response = await llm.acall(prompt)
        return await call_code(params["extract_answer"], EXTRACT_FUNCTION, response, limits=self.limits,
                               output_role="final answer extracted from the response")

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """strict: an option target '(X)' needs the last '(X)' of the answer, or a bare letter that is the whole
        answer ('B', 'B.'), to be X; any other target needs the answer to equal it after stripping whitespace,
        quotes and one final period, collapsing spaces and lower-casing. trace: Trace's metric (no normalization)."""
        target = example.target
        if self.protocol == "trace":
            return trace_protocol.metric(prediction, target)
        if prediction is None or not str(prediction).strip():
            return MetricResult(score=0.0, feedback=f"Wrong: expected {target}, but the extracted answer is empty.")
        if _OPTION.match(target.strip()):
            got = chosen_option(prediction)
            if got is None:
                return MetricResult(score=0.0, feedback=(
                    f"Wrong: expected option {target}, but the extracted answer {_quote(prediction)} names no option; "
                    "the final answer should be the option letter in parentheses, like (A)."))
            if got == target.strip():
                return MetricResult(score=1.0, feedback=f"Correct: expected {target}, got {got}.")
            return MetricResult(score=0.0, feedback=f"Wrong: expected option {target}, got {got}.")
        want, got = normalize_answer(target), normalize_answer(prediction)
        if got == want:
            return MetricResult(score=1.0, feedback=f"Correct: expected {target}, got {_quote(prediction)}.")
        if want in _BINARY and got != _BINARY[want]:
            a, b = sorted([want, _BINARY[want]], key=lambda w: w in ("false", "no", "invalid"))
            return MetricResult(score=0.0, feedback=(
                f"Wrong: expected {target}, but the extracted answer {_quote(prediction)} is neither {a} nor {b}; "
                f"the final answer should be exactly one of them."))
        return MetricResult(score=0.0, feedback=f"Wrong: expected {target}, got {_quote(prediction)}.")

    def sim_world(self, splits: Splits) -> SimWorld:
        every = splits.train + splits.val + splits.test
        targets = sorted({e.target for e in every})
        if all(re.fullmatch(r"-?\d+", t) for t in targets):
            kind, distractors = "int", []
        elif len(targets) <= 20:  # options, True/False, ...: a wrong answer is another answer of the sub-task
            kind, distractors = "text", targets
        else:
            kind, distractors = "text", []
        return SimWorld(task=f"{self.name}:{self.subtask}", rubric=RUBRIC, answers={e.input: e.target for e in every},
                        base_accuracy=0.4, max_accuracy=0.9, answer_kind=kind, distractors=distractors,
                        answer_format=answer_format(self.protocol))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "subtask": self.subtask, "protocol": self.protocol}


RUBRIC = [
    RubricItem(key="step_by_step", guidance="Think step by step before giving the answer.",
               keywords=["step by step", "step-by-step"],
               hint="it should ask the model to reason step by step before answering",
               echo="(Reasoned step by step.)", applies_to=["prompt_template"]),
    RubricItem(key="options", guidance="When the question lists options, weigh each option against the question "
                                       "before choosing one.",
               keywords=["each option", "every option"],
               hint="it should ask to weigh each listed option against the question before choosing",
               echo="(Weighed each option.)", applies_to=["prompt_template"]),
    RubricItem(key="answer_form", guidance="End with the line 'Answer: X' where X is exactly the form the question "
                                           "expects: the option letter like (A), True/False, Yes/No, valid/invalid, "
                                           "or a number.",
               keywords=["exactly the form", "option letter"],
               hint="it should say that the final line gives the answer exactly in the expected form, e.g. the "
                    "option letter like (A)",
               echo="(Gave the answer in the expected form.)", applies_to=["prompt_template"]),
    RubricItem(key="double_check", guidance="Double-check the chosen answer against the facts of the question.",
               keywords=["double-check", "double check", "check the chosen answer"],
               hint="it should ask to double-check the chosen answer against the facts of the question",
               echo="(Double-checked the answer.)", applies_to=["prompt_template"]),
]
