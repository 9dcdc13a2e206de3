"""Bounded arithmetic on untrusted text (a model's CALC line, a tool call's expression, an answer to check).

The expression is parsed by Python's own parser and walked node by node: numbers, the allowed operators and
parentheses only, never a name, call or attribute, so nothing in the text is ever executed. Its length, every
exponent and every intermediate magnitude are bounded, so each power is cheap and no expression can stall the
process (`9**9**9**9` is refused at its second power). One walker serves the GSM8K calculator, the tool-use
calculator and the symbolic checker; each passes its own operators, bounds and number type.
"""
from __future__ import annotations

import ast
import operator
from typing import Any, Callable

BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


def evaluate(text: str, *, binary: tuple[type, ...] = tuple(BINARY), max_chars: int = 200, max_exponent: float = 100,
             max_magnitude: float = 1e100, number: Callable[[int | float], Any] = lambda v: v) -> Any:
    """The value of an arithmetic expression, or ValueError saying what is not allowed. `binary` names the allowed
    operator node types; `number` turns each literal into the value type used (e.g. an exact sympy Rational)."""
    if len(text) > max_chars:
        raise ValueError(f"expression longer than {max_chars} characters")
    allowed = " ".join(SYMBOLS[op] for op in binary)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise ValueError(f"cannot parse {text!r}: only numbers, {allowed} and parentheses are allowed") from exc

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            if not abs(node.value) <= max_magnitude:  # also refuses nan/inf literals such as 1e999
                raise ValueError("a number in the expression is out of range")
            return number(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
            return UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in binary:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > max_exponent:
                raise ValueError(f"exponent {right} is larger than {max_exponent}")
            result = BINARY[type(node.op)](left, right)
            if isinstance(result, complex) or abs(result) > max_magnitude:
                raise ValueError("result is out of range")
            return result
        raise ValueError(f"only numbers, {allowed} and parentheses are allowed, not {type(node).__name__}")

    try:
        return walk(tree.body)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    except (RecursionError, OverflowError):
        raise ValueError(f"{text!r} is out of range or nested too deeply") from None
    except TypeError:  # e.g. a power whose value is not a real number, which cannot be compared with a bound
        raise ValueError(f"{text!r} has no real value") from None


__all__ = ["BINARY", "UNARY", "evaluate"]
