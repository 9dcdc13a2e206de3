"""BIG-Bench Hard word sorting: one LLM call with a trainable instruction, then an answer parser (TextGrad's setup).

Protocols: `strict` (ours: exact match of the normalized word list after the last 'Answer:') and `textgrad`
(TextGrad's: its starting prompt, and an LLM judge on the engines' `judge` role that compares the whole response
with the ground truth; tasks/protocols/textgrad.py).
"""
from __future__ import annotations

import re
from typing import Any

from tasks.bbh_data import split_bbh
from tasks.protocols import STRICT, answer_format, choose_protocol, textgrad
from tasks.protocols.strict import answer_line
from tasks.validators import answer_line as answer_line_validator
from textgrad_core.engines import EngineSet
from textgrad_core.loss import MetricResult
from textgrad_core.ops import LLMCall, traced
from textgrad_core.task import Example, RubricItem, SimWorld, Splits, Task, check_size
from textgrad_core.variable import Parameter, ParameterSet, Variable

INITIAL_INSTRUCTION = (
    "You will answer a reasoning question. Think step by step. The last line of your response should be "
    "of the following format: 'Answer: $VALUE' where VALUE is the words of the list sorted alphabetically, "
    "separated by single spaces."
)

PROTOCOLS = (STRICT, "textgrad")
_SEPARATORS = re.compile(r"[\s,]+")


@traced(output_role="sorted word list parsed from the response")
def parse_sorted_words(response: str) -> str:
    """Take the text after the last 'Answer:' (or the next non-empty line); without one, the last non-empty line."""
    line = answer_line(response)
    if line is not None:
        return line
    lines = [line.strip() for line in response.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def normalize_words(text: str) -> list[str]:
    """Lowercase words split on whitespace and commas, without surrounding quotes or a final period."""
    text = str(text).strip().strip("'\"`").rstrip(".").lower()
    return [w.strip("'\"`") for w in _SEPARATORS.split(text) if w.strip("'\"`")]


class WordSortingTask(Task):
    """Sort a list of words alphabetically; exact match of the normalized word list."""

    name = "bbh_word_sorting"
    description = "BIG-Bench Hard word sorting (TextGrad split: 50 train / 100 val / 100 test)."

    def __init__(self, data_dir: str | None = None, n_train: int = 50, n_val: int = 100, protocol: str = STRICT):
        check_size("n_train", n_train)
        check_size("n_val", n_val)
        self.protocol = choose_protocol(self.name, protocol, PROTOCOLS)
        self.data_dir = data_dir
        self.n_train = n_train
        self.n_val = n_val

    def load_splits(self) -> Splits:
        """TextGrad's split of the 250 examples: first 50 train, next 100 validation, the rest test."""
        return split_bbh("word_sorting", self.data_dir, self.n_train, self.n_val)

    def initial_parameters(self) -> list[Parameter]:
        if self.protocol == "textgrad":  # TextGrad starts every BBH task from the same numeric prompt
            return [Parameter(value=textgrad.BBH_STARTING_PROMPT, name="instruction", role=textgrad.SYSTEM_PROMPT_ROLE)]
        return [Parameter(value=INITIAL_INSTRUCTION, name="instruction",
                          role="system prompt of the model that sorts lists of words alphabetically",
                          constraints=["Keep the required final line format 'Answer: $VALUE' with the sorted words "
                                       "separated by spaces."],
                          validators=[answer_line_validator()])]

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        llm = LLMCall(engines["forward"], params["instruction"], name="sorting_llm",
                      output_role="step-by-step answer to the word-sorting question")
        response = await llm.acall(Variable(example.input, role="word-sorting question"))
        if self.protocol == "textgrad":  # TextGrad's judge reads the whole response
            return response
        return parse_sorted_words(response)

    async def loss(self, prediction: Variable, example: Example, engines: EngineSet) -> Variable:
        """strict: the metric below; textgrad: TextGrad's LLM judge (engines role `judge`), <ACCURACY> 0 or 1."""
        if self.protocol == "textgrad" and not prediction.is_error:
            return await textgrad.judge_loss(engines["judge"], prediction, str(example.input), str(example.target),
                                             name="textgrad_bbh_judge")
        return await super().loss(prediction, example, engines)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """Exact match of the sorted word list (lowercase, split on whitespace/commas); names the first wrong position."""
        expected, got = normalize_words(example.target), normalize_words(prediction)
        if not got:
            return MetricResult(score=0.0, feedback=f"Wrong: expected the {len(expected)} words '{' '.join(expected)}', "
                                "but no word list could be parsed from the response; the 'Answer: $VALUE' line was missing.")
        if got == expected:
            return MetricResult(score=1.0, feedback=f"Correct: all {len(expected)} words are in alphabetical order.")
        position = next((i for i, (e, g) in enumerate(zip(expected, got)) if e != g), min(len(expected), len(got)))
        if position < min(len(expected), len(got)):
            where = (f"the order differs first at position {position + 1}: expected '{expected[position]}' "
                     f"but got '{got[position]}'")
        elif len(got) < len(expected):
            where = f"the answer stops after position {position}; expected '{expected[position]}' next"
        else:
            where = f"the answer goes on after the last expected word, at position {position + 1} with '{got[position]}'"
        problems = [where]
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        if missing:
            problems.append(f"words missing: {', '.join(missing)}")
        if extra:
            problems.append(f"words not in the list: {', '.join(extra)}")
        if len(got) != len(expected):
            problems.append(f"{len(got)} words given, {len(expected)} expected")
        return MetricResult(score=0.0, feedback=f"Wrong: {'; '.join(problems)}. Expected '{' '.join(expected)}', "
                                                f"got '{' '.join(got)}'.")

    def sim_world(self, splits: Splits) -> SimWorld:
        every = splits.train + splits.val + splits.test
        return SimWorld(task=self.name, rubric=RUBRIC, answers={e.input: e.target for e in every},
                        base_accuracy=0.4, max_accuracy=0.9, answer_kind="text",
                        answer_format=answer_format(self.protocol))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "protocol": self.protocol}


RUBRIC = [
    RubricItem(key="letter_by_letter",
               guidance="Compare words letter by letter: when the first letters tie, the second letter decides, and so on.",
               keywords=["letter by letter", "second letter"],
               hint="it should say to compare words letter by letter when their first letters are the same",
               echo="(Compared tied words letter by letter.)", applies_to=["instruction"]),
    RubricItem(key="keep_all",
               guidance="First write out every word of the list and count them; the answer must contain exactly the "
                        "same words, none dropped or added.",
               keywords=["count them", "none dropped", "exactly the same words"],
               hint="it should ask to count the words and keep exactly the same words, none dropped or added",
               echo="(Counted the words and kept every one.)", applies_to=["instruction"]),
    RubricItem(key="prefix", guidance="A word that is a prefix of another word (like 'car' and 'card') comes first.",
               keywords=["prefix of another"],
               hint="it should say that a word which is a prefix of another word comes before it",
               echo="(Placed prefixes before the longer words.)", applies_to=["instruction"]),
    RubricItem(key="spelling",
               guidance="Copy every word exactly as written, keeping its spelling and symbols such as '&'.",
               keywords=["exactly as written", "keeping its spelling"],
               hint="it should ask to copy every word exactly as written, keeping its spelling",
               echo="(Copied each word exactly as written.)", applies_to=["instruction"]),
]
