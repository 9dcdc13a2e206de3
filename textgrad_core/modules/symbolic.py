"""An LLM with a symbolic checker (AlphaGeometry's pattern, here with sympy): propose, verify, retry with the
checker's message until the checker accepts or the retries run out.

Graph: `<name>.propose` (LLM, fed by the instruction) -> `<name>.check` (sympy, fed by the proposal and the
problem's specification) -> per retry `<name>.retry` (LLM: the problem, the previous answer and the checker's
message) -> `<name>.check` ...; the output is a `<name>.result` node fed by the last proposal, its check and the
`retries` parameter. Parameters: `<name>.instruction` (text), `<name>.retries` (number).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Callable

from textgrad_core.arithmetic import evaluate
from textgrad_core.engines import Engine
from textgrad_core.modules import prompts
from textgrad_core.modules.base import Module, ParameterSpec, whole_number
from textgrad_core.ops import FormattedLLMCall, LLMCall, as_variable
from textgrad_core.variable import OpRecord, ParameterSet, Variable

ANSWER_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)  # an answer may be '7/2' or '-3', nothing more
_ANSWER = re.compile(r"answer\s*:(.*)", re.IGNORECASE)


@dataclass
class Verdict:
    """What the checker says of a proposal: accepted or not, and why in words."""

    ok: bool
    message: str


def check_equation(spec: str, response: str) -> Verdict:
    """Substitute the answer of `response` ('Answer: 5' or 'Answer: x = 5') into the equation `spec` ('3*x + 1 = 16',
    one unknown) with sympy; accepted when both sides are then equal."""
    import sympy  # imported here: a plain `import textgrad_core` loads no computer-algebra system

    found = _ANSWER.findall(response)
    if not found or not found[-1].strip():
        return Verdict(False, "The response has no 'Answer: <value>' line, so there is nothing to check.")
    answer = found[-1].strip().rstrip(".")
    answer = answer.split("=")[-1].strip()
    left, _, right = spec.partition("=")
    lhs, rhs = sympy.sympify(left), sympy.sympify(right or "0")  # the task's own equation: trusted text
    unknowns = sorted(lhs.free_symbols | rhs.free_symbols, key=str)
    try:
        # The model's answer is never sympified (that evaluates it as Python): only numbers and arithmetic, read by
        # the bounded walker into exact sympy numbers.
        value = evaluate(answer.replace(",", ""), binary=ANSWER_OPERATORS, max_exponent=12, max_magnitude=1e30,
                         number=lambda v: sympy.Rational(repr(v)) if isinstance(v, float) else sympy.Integer(v))
    except ValueError as exc:
        return Verdict(False, f"The answer {answer!r} cannot be read as a number ({exc}).")
    if len(unknowns) != 1:
        return Verdict(False, f"The equation {spec!r} must have exactly one unknown, it has {len(unknowns)}.")
    x = unknowns[0]
    got_l, got_r = sympy.simplify(lhs.subs(x, value)), sympy.simplify(rhs.subs(x, value))
    if sympy.simplify(got_l - got_r) == 0:
        return Verdict(True, f"Substituting {x} = {value} gives {got_l} = {got_r}: the equation holds.")
    return Verdict(False, f"Substituting {x} = {value} into {spec} gives {got_l} on the left but {got_r} on the "
                          f"right: {value} is not a solution.")


class SymbolicChecker(Module):
    """Propose an answer, verify it symbolically, retry with the checker's message (up to `retries` times)."""

    def __init__(self, name: str = "solver", instruction: str = prompts.SYMBOLIC_INSTRUCTION, retries: int = 2,
                 max_retries: int = 5, check: Callable[[str, str], Verdict] = check_equation, max_tokens: int = 1024):
        super().__init__(name)
        self.initial = {"instruction": instruction, "retries": retries}
        self.max_retries, self.check, self.max_tokens = max_retries, check, max_tokens

    def specs(self) -> list[ParameterSpec]:
        return [ParameterSpec("instruction", self.initial["instruction"], "instruction of the model that proposes "
                              "(and, after a rejection, revises) the answer the symbolic checker verifies",
                              constraints=["Keep the final line format 'Answer: <value>'."]),
                ParameterSpec("retries", self.initial["retries"], f"how many times a rejected answer is retried with "
                              f"the checker's message (0..{self.max_retries})", kind="number",
                              constraints=[f"A whole number from 0 to {self.max_retries}."])]

    async def acall(self, engine: Engine, problem: Variable | str, spec: Variable | str,
                    params: ParameterSet | None = None) -> Variable:
        """Propose, check and retry; returns the result node (the last proposal and the checker's verdict)."""
        instruction, retries_param = self.param(params, "instruction"), self.param(params, "retries")
        retries = whole_number(retries_param, 0, self.max_retries)
        problem, spec = as_variable(problem, "problem to solve"), as_variable(spec, "what the checker verifies")
        proposer = LLMCall(engine, instruction, name=f"{self.name}.propose", max_tokens=self.max_tokens,
                           output_role="proposed solution ending with 'Answer:'")
        proposal = await proposer.acall(problem)
        verdict = self._check(proposal, spec)
        retry = FormattedLLMCall(engine, prompts.SYMBOLIC_RETRY_TEMPLATE,
                                 {"problem": "problem", "previous": "the rejected answer",
                                  "verdict": "the checker's message"}, instruction, name=f"{self.name}.retry",
                                 max_tokens=self.max_tokens, output_role="revised solution ending with 'Answer:'")
        attempts = 1
        while not verdict.value["ok"] and attempts <= retries:
            proposal = await retry.acall(problem=problem, previous=proposal,
                                         verdict=_message(verdict))
            verdict = self._check(proposal, spec)
            attempts += 1
        self.record(params, str(problem.value), str(proposal.value))
        return self._result(proposal, verdict, retries_param, attempts)

    def _check(self, proposal: Variable, spec: Variable) -> Variable:
        verdict = self.check(str(spec.value), str(proposal.value))
        op = OpRecord(name=f"{self.name}.check", kind="function", inputs=[("proposal", proposal), ("spec", spec)],
                      description="A symbolic checker (sympy) verifies the proposal's answer against the problem.")
        return Variable(value={"ok": verdict.ok, "message": verdict.message}, role="the checker's verdict", op=op)

    def _result(self, proposal: Variable, verdict: Variable, retries_param: Variable, attempts: int) -> Variable:
        op = OpRecord(name=f"{self.name}.result", kind="function",
                      inputs=[("proposal", proposal), ("verdict", verdict), ("retries", retries_param)],
                      description="The last proposal, with the checker's verdict and how many attempts were made.")
        state = "accepted" if verdict.value["ok"] else "still rejected"
        text = f"{proposal.value}\n(Checker, after {attempts} attempt(s): {state}. {verdict.value['message']})"
        return Variable(value=text, role="the checked solution", op=op)


def _message(verdict: Variable) -> Variable:
    op = OpRecord(name="checker_message", kind="function", inputs=[("verdict", verdict)],
                  description="The checker's message in words.")
    return Variable(value=verdict.value["message"], role="the checker's message", op=op)
