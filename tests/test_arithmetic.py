"""The one bounded arithmetic walker (textgrad_core/arithmetic.py) behind the GSM8K calculator, the tool-use
calculator and the symbolic checker: it computes arithmetic, refuses everything else with a ValueError, and no text
can execute code or stall the process (the tool-use calculator once took 3.4 s on six nested `**12`)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tasks.gsm8k import safe_eval
from tasks.tool_use import calculate
from textgrad_core.arithmetic import evaluate
from textgrad_core.modules.symbolic import check_equation


@pytest.mark.parametrize("text, value", [("2+3*4", 14), ("(1+2)**3", 27), ("7//2", 3), ("7%4", 3), ("-3--4", 1),
                                         ("1.5*4", 6.0), ("10/4", 2.5)])
def test_arithmetic_is_computed(text, value):
    assert evaluate(text) == value


@pytest.mark.parametrize("text, reason", [
    ("__import__('os').getpid()", "not Call"), ("x + 1", "not Name"), ("(1).real", "not Attribute"),
    ("[1, 2]", "not List"), ("1e101", "out of range"), ("1e999", "out of range"), ("2**101", "exponent"), ("10**50 * 10**51", "out of range"), ("1/0", "division by zero"),
    ("1 +", "cannot parse"), ("1" * 201, "longer than 200"), ("True + 1", "not Constant"),
    ("-" * 20000 + "1", "nested too deeply|cannot parse"), ("(" * 300 + "1" + ")" * 300, "cannot parse"),
])
def test_everything_else_is_one_value_error(text, reason):
    with pytest.raises(ValueError, match=reason):
        evaluate(text, max_chars=200 if len(text) < 250 else 50000)


def test_nested_powers_are_refused_before_they_grow():
    """Each intermediate result is bounded, so the operands of every power stay small."""
    nested = "(" * 8 + "2" + "**12)" * 8
    with pytest.raises(ValueError, match="out of range"):
        calculate.__wrapped__(nested)
    with pytest.raises(ValueError, match="larger than"):
        safe_eval("9**9**9**9")


def test_each_user_keeps_its_own_operators():
    with pytest.raises(ValueError, match="not BinOp"):
        calculate.__wrapped__("7 // 2")  # the tool-use calculator has no floor division
    assert safe_eval("7 // 2") == 3
    assert evaluate("7 - 2", binary=(ast.Sub,)) == 5


def test_the_symbolic_checker_never_evaluates_an_answer():
    forged = check_equation("3*x + 1 = 16", "Answer: __import__('os')._exit(3) or 5")
    assert not forged.ok and "cannot be read as a number" in forged.message
    assert check_equation("3*x + 1 = 16", "Answer: x = 10/2").ok  # exact: 10/2 is the Rational 5
    assert check_equation("2*x = 5", "Answer: 2.5").ok


@settings(max_examples=300, deadline=None)
@example("1e101")  # a bare literal past the bound: found by a random draw in CI
@example("-1e999")
@given(st.text(alphabet="0123456789+-*/%().e ", max_size=60) | st.text(max_size=60))
def test_any_text_gives_a_number_or_a_value_error(text):
    try:
        result = evaluate(text)
    except ValueError:
        return
    assert isinstance(result, (int, float)) and abs(result) <= 1e100
