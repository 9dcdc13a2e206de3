"""GSM8K grade-school math: one LLM call with a trainable instruction, optionally a traced calculator tool.

Without the calculator the system is TextGrad's GSM8K setup: the instruction is the system prompt, the reply ends
with 'Answer: <number>'. With `use_calculator`, the model also sees a trainable tool description; every line
`CALC(<expression>)` of its draft is evaluated by a safe, traced calculator and the results are fed back in a
second call, whose reply is the answer.

Protocols: `strict` (ours: numeric match of the FIRST number after the last 'Answer:') and `textgrad` (TextGrad's
string-based integer check on the whole response, its starting prompt, its "Question: ..." input;
tasks/protocols/textgrad.py; without the calculator only).
"""
from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

from tasks.protocols import STRICT, answer_format, choose_protocol, textgrad
from tasks.protocols.strict import NUMBER, first_number_after_answer
from tasks.validators import answer_line, literal
from textgrad_core.arithmetic import evaluate
from textgrad_core.engines import EngineSet
from textgrad_core.errors import ConfigError
from textgrad_core.loss import MetricResult
from textgrad_core.ops import FormattedLLMCall, LLMCall, traced
from textgrad_core.task import (DataError, Example, RubricItem, SimWorld, Splits, Task, check_fits, check_size,
                                display_path, read_jsonl)
from textgrad_core.variable import Parameter, ParameterSet, Variable

DATA_DIR = Path(__file__).parent / "data" / "gsm8k"

INITIAL_INSTRUCTION = (
    "You will answer a mathematical reasoning question. Think step by step. The last line of your response "
    "should be of the following format: 'Answer: $VALUE' where VALUE is a numerical value."
)

INITIAL_TOOL_DESCRIPTION = (
    "Calculator: to compute an arithmetic expression exactly, write it on a line of its own as "
    "CALC(<expression>), using numbers, + - * / // % ** and parentheses. The system evaluates every CALC line "
    "and shows you the results before you give your final answer."
)

DRAFT_TEMPLATE = """Tool available to you:
{tool}

Question:
{question}"""

FINAL_TEMPLATE = """Question:
{question}

Your draft solution:
{draft}

Calculator results for the CALC lines of your draft:
{results}

Using these results, write your final solution."""


# ---- the calculator tool ------------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e100


def safe_eval(expression: str) -> int | float:
    """Evaluate an arithmetic expression (numbers and + - * / // % ** only, no names or calls), bounded in length,
    exponent and magnitude (textgrad_core.arithmetic)."""
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**").replace("$", "")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands separators: 1,000 -> 1000
    return evaluate(text, max_chars=MAX_EXPRESSION_CHARS, max_exponent=MAX_EXPONENT, max_magnitude=MAX_MAGNITUDE)


def format_number(value: int | float) -> str:
    """A number as the calculator shows it: integers without '.0', others rounded to 6 decimals."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("result is not a finite number")
        if value.is_integer():
            return str(int(value))
        return f"{round(value, 6):.6f}".rstrip("0").rstrip(".")
    return str(value)


def find_calc(text: str) -> list[str]:
    """The expression inside every CALC(...) of the text, nested parentheses included (an unclosed one runs to
    the end of its line)."""
    found = []
    start = text.find("CALC(")
    while start >= 0:
        i, depth = start + len("CALC("), 1
        while i < len(text) and text[i] != "\n":
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        found.append(text[start + len("CALC("):i].strip())
        start = text.find("CALC(", i)
    return [f for f in found if f]


@traced(output_role="arithmetic expressions the model asked the calculator to evaluate, one per line")
def calc_requests(response: str) -> str:
    """Collect the expression of every CALC(<expression>) in the response, one per line."""
    return "\n".join(find_calc(response))


@traced(output_role="calculator results, one '<expression> = <value>' line per expression")
def calculator(expression: str) -> str:
    """Evaluate arithmetic safely (an AST walk, never eval): one expression per line, '<expression> = <value>' each."""
    lines = []
    for expr in (e for e in expression.splitlines() if e.strip()):
        try:
            lines.append(f"{expr} = {format_number(safe_eval(expr))}")
        except (ValueError, ZeroDivisionError, OverflowError) as exc:
            lines.append(f"{expr} = error: {exc}")
    return "\n".join(lines)


# ---- answers and the metric ----------------------------------------------------------------------


def normalize_number(text: str) -> str:
    """'1,234.0' or '$72' -> '1234' / '72': no commas, no '$', no trailing '.0'."""
    cleaned = text.replace("$", "").replace(",", "").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return cleaned
    return str(int(value)) if value.is_integer() else repr(value)


def parse_answer(response: str) -> tuple[str | None, bool]:
    """(the final number, whether it came from an 'Answer:' line): the FIRST number after the last 'Answer:' (its
    own line empty: from the next line), else the last number anywhere in the response. 'Answer: 24 (because
    2 + 3 = 5)' reads 24; 'Answer: 18 apples, 4 left' reads 18."""
    number, from_line = first_number_after_answer(response, NUMBER)
    return (normalize_number(number) if number is not None else None), from_line


def numbers_equal(a: str, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-6
    except ValueError:
        return a == b


def gsm8k_metric(prediction: Any, example: Example) -> MetricResult:
    """Numeric match (within 1e-6) of the first number after the last 'Answer:' (else the response's last number)
    with the target, with the reason in words."""
    expected = str(example.target)
    got, from_line = parse_answer(str(prediction))
    if got is None:
        return MetricResult(score=0.0, feedback=f"Wrong: expected {expected}, but the response contains no number: "
                            "the final line 'Answer: <number>' is missing.")
    note = "" if from_line else (" (the response has no 'Answer: <number>' line, so its last number was taken; "
                                 "end with that line)")
    if numbers_equal(got, expected):
        return MetricResult(score=1.0, feedback=f"Correct: expected {expected}, got {got}.{note}")
    return MetricResult(score=0.0, feedback=f"Wrong: expected {expected}, got {got}.{note}")


# ---- data --------------------------------------------------------------------------------------



def _read_hf(paths: dict[str, Path], cache_dir: str | None) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError("task.loader=hf needs the Hugging Face 'datasets' package: pip install datasets "
                          "(or pip install 'textgrad-core[data]'), or use task.loader=json.") from exc
    for path in paths.values():  # datasets' own error on a bad line names neither file nor line
        read_jsonl(path)
    loaded = datasets.load_dataset("json", data_files={k: str(p) for k, p in paths.items()}, cache_dir=cache_dir)
    return {split: [(i + 1, dict(row)) for i, row in enumerate(loaded[split])] for split in paths}


def final_answer(solution: str) -> str:
    """The number after '#### ' in a GSM8K solution, without commas."""
    if "####" not in solution:
        raise ValueError("no '#### <answer>' line")
    return normalize_number(solution.split("####")[-1].strip())


def load_gsm8k(data_dir: str | Path | None = None, loader: str = "json",
               hf_cache_dir: str | None = None) -> dict[str, list[Example]]:
    """Both GSM8K files in file order, ids 'gsm8k-<split>-<line index>', target = the number after '#### '."""
    directory = Path(data_dir) if data_dir else DATA_DIR
    paths = {split: directory / f"{split}.jsonl" for split in ("train", "test")}
    for path in paths.values():
        if not path.exists():
            raise ConfigError(f"GSM8K file {path} not found: point task.data_dir at a directory holding train.jsonl "
                              "and test.jsonl (one {\"question\", \"answer\"} object per line), or leave it null.")
    if loader == "json":
        rows = {split: read_jsonl(path) for split, path in paths.items()}
    elif loader == "hf":
        rows = _read_hf(paths, hf_cache_dir)
    else:
        raise ConfigError(f"Unknown task.loader '{loader}': use 'json' (plain reader) or 'hf' (Hugging Face datasets).")
    out: dict[str, list[Example]] = {}
    for split, items in rows.items():
        out[split] = []
        for i, (line, r) in enumerate(items):
            try:
                out[split].append(Example(id=f"gsm8k-{split}-{i}", input=r["question"],
                                          target=final_answer(r["answer"]), meta={"solution": r["answer"]}))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{display_path(paths[split])} line {line} is not a GSM8K file line (an object with "
                                f"\"question\" and \"answer\": \"... #### <number>\"): {exc!r}.") from None
    return out


# ---- the task ----------------------------------------------------------------------------------

PROTOCOLS = (STRICT, "textgrad")


class GSM8KTask(Task):
    """Grade-school math word problems; numeric match of the final answer."""

    name = "gsm8k"
    description = ("GSM8K (DSPy/TextGrad split: train shuffled with Random(0) -> 200 train / 300 val; "
                   "all 1,319 test).")

    def __init__(self, data_dir: str | None = None, loader: str = "json", hf_cache_dir: str | None = None,
                 n_train: int = 200, n_val: int = 300, test_size: int | None = None, use_calculator: bool = False,
                 protocol: str = STRICT):
        # TextGrad's protocol describes this task's own one-call system; a subclass with its own system is strict.
        reproduces = type(self).forward is GSM8KTask.forward and not use_calculator
        self.protocol = choose_protocol(self.name, protocol, PROTOCOLS if reproduces else (STRICT,))
        if loader not in ("json", "hf"):
            raise ConfigError(f"Unknown task.loader '{loader}': use 'json' (plain reader) or 'hf' (Hugging Face datasets).")
        check_size("n_train", n_train)
        check_size("n_val", n_val)
        check_size("test_size", test_size, optional=True)
        self.data_dir = data_dir
        self.loader = loader
        self.hf_cache_dir = hf_cache_dir
        self.n_train = n_train
        self.n_val = n_val
        self.test_size = test_size
        self.use_calculator = use_calculator

    def load_splits(self) -> Splits:
        """DSPy's split (TextGrad uses it): the train file shuffled with random.Random(0), its first n_train examples
        train and the next n_val validation; test is the whole test file, shuffled with a fresh random.Random(0)
        (so `test_size` keeps the same prefix DSPy would), cut to `test_size` when set."""
        data = load_gsm8k(self.data_dir, self.loader, self.hf_cache_dir)
        train, test = list(data["train"]), list(data["test"])
        random.Random(0).shuffle(train)
        random.Random(0).shuffle(test)
        directory = Path(self.data_dir) if self.data_dir else DATA_DIR
        check_fits({"n_train": self.n_train, "n_val": self.n_val}, len(train), display_path(directory / "train.jsonl"))
        if self.test_size is not None:
            check_fits({"test_size": self.test_size}, len(test), display_path(directory / "test.jsonl"))
        a, b = self.n_train, self.n_train + self.n_val
        return Splits(train=train[:a], val=train[a:b], test=test[: self.test_size] if self.test_size else test)

    def initial_parameters(self) -> list[Parameter]:
        if self.protocol == "textgrad":
            return [Parameter(value=textgrad.GSM8K_STARTING_PROMPT, name="instruction", role=textgrad.SYSTEM_PROMPT_ROLE)]
        params = [Parameter(value=INITIAL_INSTRUCTION, name="instruction",
                            role="system prompt of the model that solves grade-school math word problems",
                            constraints=["Keep the required final line format 'Answer: $VALUE'."],
                            validators=[answer_line()])]
        if self.use_calculator:
            params.append(Parameter(value=INITIAL_TOOL_DESCRIPTION, name="calculator.description",
                                    role="description of the calculator tool shown to the math model",
                                    constraints=["Keep the CALC(<expression>) syntax: the system evaluates only "
                                                 "lines of that form."],
                                    validators=[literal("CALC(", "the system evaluates only CALC(<expression>) lines")]))
        return params

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        if self.protocol == "textgrad":
            question = Variable(textgrad.format_gsm8k_question(example.input), role="query to the language model")
        else:
            question = Variable(example.input, role="grade-school math word problem")
        if not self.use_calculator:
            llm = LLMCall(engines["forward"], params["instruction"], name="math_llm",
                          output_role="step-by-step solution ending with 'Answer: <number>'")
            return await llm.acall(question)
        draft_llm = FormattedLLMCall(engines["forward"], DRAFT_TEMPLATE,
                                     {"tool": "description of the calculator tool", "question": "math word problem"},
                                     params["instruction"], name="math_llm_draft",
                                     output_role="draft solution, possibly with CALC(<expression>) lines")
        draft = await draft_llm.acall(tool=params["calculator.description"], question=question)
        if not find_calc(str(draft.value)):  # no tool use: the draft is the answer
            return draft
        results = calculator(calc_requests(draft))
        final_llm = FormattedLLMCall(engines["forward"], FINAL_TEMPLATE,
                                     {"question": "math word problem", "draft": "the model's draft solution",
                                      "results": "calculator results"},
                                     params["instruction"], name="math_llm_final",
                                     output_role="final solution ending with 'Answer: <number>'")
        return await final_llm.acall(question=question, draft=draft, results=results)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """strict: numeric match of the first number after the last 'Answer:'; textgrad: TextGrad's integer check."""
        if self.protocol == "textgrad":
            return textgrad.integer_check(prediction, example.target)
        return gsm8k_metric(prediction, example)

    def sim_world(self, splits: Splits) -> SimWorld:
        every = splits.train + splits.val + splits.test
        return SimWorld(task=self.name, rubric=RUBRIC, answers={e.input: e.target for e in every},
                        base_accuracy=0.5, max_accuracy=0.95, answer_kind="int",
                        answer_format=answer_format(self.protocol))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "protocol": self.protocol}


# Each echo contains one of its keywords, so a stage downstream that reads the answer sees the guidance too
# (the layered task relies on this). Checking arithmetic may also live in the calculator's description.
RUBRIC = [
    RubricItem(key="quantities", guidance="First list every quantity given in the problem together with its unit.",
               keywords=["every quantity", "each quantity"],
               hint="it should ask to list every quantity given in the problem with its unit before computing",
               echo="(Listed every quantity given, with its unit.)", applies_to=["instruction"]),
    RubricItem(key="plan", guidance="Before calculating, name the intermediate values needed to reach the answer.",
               keywords=["intermediate value"],
               hint="it should ask to name the intermediate values needed before calculating",
               echo="(Named each intermediate value before calculating.)", applies_to=["instruction"]),
    RubricItem(key="units", guidance="Convert units and rates (minutes and hours, percentages, per-item prices) "
               "before combining numbers.",
               keywords=["units and rates", "convert units"],
               hint="it should say to convert units and rates (time, percentages, unit prices) before combining them",
               echo="(Converted units and rates consistently.)", applies_to=["instruction"]),
    RubricItem(key="verify", guidance="Recompute each arithmetic step and check the final answer against the question.",
               keywords=["recompute", "check the final answer"],
               hint="it should ask to recompute each arithmetic step and check the final answer against the question",
               echo="(Recomputed each arithmetic step.)", applies_to=["instruction", "calculator.description"]),
]
