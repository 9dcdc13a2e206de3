"""Sample-and-filter (AlphaCode-style): n programs, each run on the public tests in the sandbox, clustered by how
they behave on generated inputs; the largest cluster of passing programs is submitted.

Every verdict and probe output comes from a checked run (textgrad_core.sandbox.acheck_program): the program runs in
one sandbox child, the public tests and probe calls in a trusted judge child (probe_harness), so a program cannot
forge its way into the submitted cluster (no reporter to call, no assert to patch, no always-equal object that
survives the wire, no early "successful" exit, no test source to read).

Graph: n LLM nodes `<name>.sample` (sample_index 1..n), one `<name>.extract` node per response, one sandbox node
`<name>.run` per program (public tests + probe inputs, one sandbox run each), one `<name>.probes` node (inputs
generated from the public tests' calls) and one `<name>.select` node whose inputs are every program, every run
and the `n` parameter. Parameters: `<name>.instruction` (text), `<name>.n` (number).
"""
from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
from typing import Any, Callable

from textgrad_core.engines import Engine
from textgrad_core.modules import probe_harness, prompts
from textgrad_core.modules.base import Module, ParameterSpec, whole_number
from textgrad_core.ops import LLMCall, as_variable
from textgrad_core.validators import NumberRange
from textgrad_core.variable import OpRecord, ParameterSet, Variable

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
JUDGE_SOURCE = inspect.getsource(probe_harness.judge_public_tests_and_probes)
JUDGE_FUNCTION = "judge_public_tests_and_probes"
_TESTS_FILE = "<public tests>"  # the judge compiles the tests under this name


def code_of(response: str) -> str:
    """The last ```python (or unlabelled) block of a response that defines a function; else the whole response."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(response)]
    python = [b for lang, b in blocks if lang in ("python", "python3", "py", "")]
    with_def = [b for b in python if re.search(r"^\s*def\s", b, re.M)]
    return ((with_def or python or [response])[-1]).strip("\n") + "\n"


def probe_inputs(tests: str, limit: int = 8) -> list[list[Any]]:
    """Inputs to compare programs on: the literal arguments of every `candidate(...)` call in the tests, then
    variants of them (numbers +1, strings and lists reversed), each once, at most `limit`."""
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return []
    seen: list[list[Any]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "candidate":
            try:
                args = [ast.literal_eval(a) for a in node.args]
            except ValueError:
                continue
            if args not in seen:
                seen.append(args)
    variants = [[_variant(a) for a in args] for args in seen]
    out: list[list[Any]] = []
    for args in seen + variants:
        if args not in out and _jsonable(args):
            out.append(args)
    return out[:limit]


def _variant(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, (str, list)):
        return value[::-1]
    return value


def _jsonable(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def clusters(runs: list[dict[str, Any]]) -> list[list[int]]:
    """Program indexes grouped by identical behaviour on the probes: passing programs' clusters first, larger first,
    ties by the earliest program."""
    groups: dict[tuple, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault((run.get("passed") is True, tuple(run.get("outputs", []))), []).append(i)
    return sorted(groups.values(), key=lambda g: (runs[g[0]].get("passed") is not True, -len(g), g[0]))


class SampleAndFilter(Module):
    """n sampled programs, filtered on public tests, clustered by behaviour; the best cluster's first is submitted."""

    def __init__(self, name: str = "coder", instruction: str = prompts.CODE_GENERATOR_INSTRUCTION, n: int = 4,
                 max_n: int = 16, temperature: float = 0.8, timeout_s: float = 5.0,
                 instruction_constraints: list[str] | None = None, max_tokens: int = 1024,
                 instruction_validators: list[Any] | None = None):
        super().__init__(name)
        self.initial = {"instruction": instruction, "n": n}
        self.max_n, self.temperature, self.max_tokens = max_n, temperature, max_tokens
        self.timeout_s = timeout_s
        self.instruction_constraints = list(instruction_constraints or [])
        self.instruction_validators = list(instruction_validators or [])

    def specs(self) -> list[ParameterSpec]:
        instruction_extra = {"validators": list(self.instruction_validators)} if self.instruction_validators else {}
        return [ParameterSpec("instruction", self.initial["instruction"], "instruction of the model that writes "
                              "each candidate program", constraints=self.instruction_constraints,
                              extra=instruction_extra),
                ParameterSpec("n", self.initial["n"], f"number of candidate programs sampled (1..{self.max_n}); each "
                              "costs a call and a sandbox run", kind="number",
                              constraints=[f"A whole number from 1 to {self.max_n}."],
                              extra={"validators": [NumberRange(1, self.max_n, integer=True)]})]

    async def acall(self, engine: Engine, problem: Variable | str, public_tests: str, entry_point: str,
                    params: ParameterSet | None = None,
                    assemble: Callable[[str], str] | None = None, helpers: str = "") -> Variable:
        """Sample n programs for `problem`, test and cluster them; returns the submitted program.

        `helpers` is trusted code the public tests may call (e.g. the problem's own helper functions), run in the
        judge before the tests; the program's own definitions never reach the judge.
        """
        from textgrad_core.sandbox import SandboxLimits, acheck_program

        instruction, n_param = self.param(params, "instruction"), self.param(params, "n")
        n = whole_number(n_param, 1, self.max_n)
        problem = as_variable(problem, "programming problem")
        tests = Variable(public_tests, role="public unit tests of the problem")
        probes = self._probes(tests)
        writer = LLMCall(engine, instruction, name=f"{self.name}.sample", temperature=self.temperature,
                         max_tokens=self.max_tokens, output_role="one sampled program in a ```python block")
        responses = await asyncio.gather(*(writer.acall(problem, sample_index=i) for i in range(1, n + 1)))
        programs = [self._extract(r, assemble) for r in responses]
        limits = SandboxLimits(timeout_s=self.timeout_s)

        judged_tests = f"{helpers.strip()}\n\n\n{public_tests}" if helpers.strip() else public_tests

        async def run(program: Variable) -> Variable:
            checked = await acheck_program(str(program.value), JUDGE_SOURCE, JUDGE_FUNCTION,
                                           [judged_tests, entry_point, probes.value, _TESTS_FILE], limits=limits)
            value = checked.value
            if not checked.judge.ok or not isinstance(value, dict):
                error = ("timeout: the tests did not finish" if checked.judge.timed_out
                         else checked.judge.error or "the test run crashed")
                value = {"passed": False, "error": error[:300], "outputs": []}
            op = OpRecord(name=f"{self.name}.run", kind="code", inputs=[("program", program), ("tests", tests),
                                                                         ("probes", probes)],
                          description="Runs the public tests, then each probe input, on the program in the sandbox "
                                      "(the tests run in a separate judge process that calls the program).")
            return Variable(value=value, role="public-test verdict and outputs on the probe inputs", op=op)

        runs = list(await asyncio.gather(*(run(p) for p in programs)))
        chosen = self._select(programs, runs, n_param)
        self.record(params, str(problem.value), str(chosen.value))
        return chosen

    def _probes(self, tests: Variable) -> Variable:
        op = OpRecord(name=f"{self.name}.probes", kind="function", inputs=[("tests", tests)],
                      description="Inputs generated from the public tests' calls and variants of them.")
        return Variable(value=probe_inputs(str(tests.value)), role="generated probe inputs", op=op)

    def _extract(self, response: Variable, assemble: Callable[[str], str] | None) -> Variable:
        code = code_of(str(response.value))
        op = OpRecord(name=f"{self.name}.extract", kind="function", inputs=[("response", response)],
                      description="The code block of the response (assembled with the problem's imports).")
        return Variable(value=assemble(code) if assemble else code, role="candidate program", op=op)

    def _select(self, programs: list[Variable], runs: list[Variable], n_param: Variable) -> Variable:
        verdicts = [r.value for r in runs]
        groups = clusters(verdicts)
        best = groups[0]
        passing = sum(v.get("passed") is True for v in verdicts)
        summary = (f"{passing} of {len(programs)} programs pass the public tests; {len(groups)} behaviour clusters "
                   f"(sizes {[len(g) for g in groups]}); submitted program {best[0] + 1}, from a cluster of "
                   f"{len(best)} {'passing' if verdicts[best[0]].get('passed') is True else 'failing'} programs.")
        inputs = ([(f"program{i + 1}", p) for i, p in enumerate(programs)]
                  + [(f"run{i + 1}", r) for i, r in enumerate(runs)] + [("n", n_param)])
        op = OpRecord(name=f"{self.name}.select", kind="function", inputs=inputs,
                      description=("Clusters the programs by identical public-test verdict and outputs on the probes; "
                                   "submits the first program of the largest passing cluster. " + summary))
        return Variable(value=str(programs[best[0]].value), role="the submitted program", op=op)
