"""Mechanical checks on parameter values, beside the textual constraints an LLM reads.

A validator says whether a proposed value is acceptable and, in one line, what it requires (the optimizer's prompt
shows that line). A value that fails is rejected like a malformed optimizer reply: one re-ask quoting the reason,
then the parameter keeps its old value and an `optimizer_reply_rejected` event names the validator.

Every parameter gets the defaults of its kind (`default_validators`): text and code are bounded in length relative
to their initial value, code must parse (with bounded resources), numbers must be finite, a choice must be one of
its declared choices, demos must be a list of {id, input, output} whose ids come from the allowed (training) ids.
Task code adds its own with `Parameter(..., validators=[...])`: a Validator, a plain function
`(value) -> str | None` (the reason, or None when the value is fine), or a config dict such as
`{"pattern": "Answer:"}`, `{"max_length": 2000}`, `{"range": [0, 1]}`, `{"defines": "f"}`.

This module imports nothing of the framework but its errors: Parameter (in variable.py) imports it.
"""
from __future__ import annotations

import ast
import math
import re
from typing import Any, Callable, Iterable

from textgrad_core.errors import ConfigError, ParseError

# Code longer than this is never parsed in the process: a parser's memory and recursion grow with the input.
MAX_CODE_CHARS = 200_000
# Bracket nesting beyond this is rejected before parsing (CPython's own limit is 200 and raises late and oddly).
MAX_CODE_NESTING = 100
# Unary operators or chained attributes in a row beyond this make the AST builder recurse once per element.
_DEEP_CHAIN = re.compile(r"(?:(?:[-+~]|\bnot\b|\bawait\b|\blambda\b[^:\n]*:)\s*){200}|(?:\.\s*\w+\s*){2000}")


class ValueRejected(ParseError):
    """A proposed parameter value failed a validator; `validator` names it, the message says why."""

    def __init__(self, validator: str, reason: str):
        self.validator = validator
        self.reason = reason
        super().__init__(f"rejected by validator '{validator}': {reason}")


class Validator:
    """A mechanical check of a proposed value: `check` returns the reason it fails, or None."""

    name = "validator"

    def check(self, value: Any, param: Any) -> str | None:
        """The reason `value` is not acceptable for `param`, or None when it is."""
        raise NotImplementedError

    def describe(self, param: Any) -> str:
        """What the value must satisfy, in one line for the optimizer's prompt ('' to show nothing)."""
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def _initial_value(param: Any) -> Any:
    history = getattr(param, "history", None)
    return history[0].value if history else getattr(param, "value", "")


class MaxLength(Validator):
    """At most `chars` characters; by default relative to the initial value: max(factor x initial, initial + slack)."""

    name = "max_length"

    def __init__(self, chars: int | None = None, factor: float = 4.0, slack: int = 2000):
        if chars is not None and (isinstance(chars, bool) or not isinstance(chars, int) or chars < 1):
            raise ConfigError(f"max_length must be a positive integer of characters, got {chars!r}.")
        self.chars, self.factor, self.slack = chars, factor, slack

    def limit(self, param: Any) -> int:
        """The limit in characters for this parameter."""
        if self.chars is not None:
            return self.chars
        initial = len(str(_initial_value(param))) if param is not None else 0
        return int(max(self.factor * initial, initial + self.slack))

    def check(self, value: Any, param: Any) -> str | None:
        n, limit = len(str(value)) if not isinstance(value, str) else len(value), self.limit(param)
        return None if n <= limit else f"the value has {n} characters; at most {limit} are allowed"

    def describe(self, param: Any) -> str:
        return f"at most {self.limit(param)} characters" if param is not None or self.chars else ""


class Pattern(Validator):
    """The value must contain a match of `regex` (multiline: '^' and '$' match at each line)."""

    name = "pattern"

    def __init__(self, regex: str, description: str | None = None):
        try:
            self.regex = re.compile(regex, re.MULTILINE)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"validator pattern {regex!r} is not a valid regular expression: {exc}.") from None
        self.description = description or f"it must contain a match of the regular expression {regex!r}"

    def check(self, value: Any, param: Any) -> str | None:
        return None if self.regex.search(str(value)) else f"{self.description} (no match found)"

    def describe(self, param: Any) -> str:
        return self.description


class NumberRange(Validator):
    """A finite number (NaN and infinities rejected), optionally within [low, high], optionally an integer."""

    name = "number_range"

    def __init__(self, low: float | None = None, high: float | None = None, integer: bool = False):
        if low is not None and high is not None and low > high:
            raise ConfigError(f"number range [{low}, {high}] is empty: give low <= high.")
        self.low, self.high, self.integer = low, high, integer

    def check(self, value: Any, param: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"a number is required, got {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"the number must be finite, got {value}"
        if self.integer and not float(value).is_integer():
            return f"an integer is required, got {value}"
        if self.low is not None and value < self.low:
            return f"{value} is below the minimum {self.low}"
        if self.high is not None and value > self.high:
            return f"{value} is above the maximum {self.high}"
        return None

    def describe(self, param: Any) -> str:
        bounds = ("" if self.low is None and self.high is None else
                  f" in [{'-inf' if self.low is None else self.low}, {'inf' if self.high is None else self.high}]")
        return f"a finite {'integer' if self.integer else 'number'}{bounds}"


class Compiles(Validator):
    """Python source that parses and compiles (parsed with bounded size and nesting); optionally defines `function`."""

    name = "compiles"

    def __init__(self, function: str | None = None, max_chars: int = MAX_CODE_CHARS):
        if function is not None and not str(function).isidentifier():
            raise ConfigError(f"defines: {function!r} is not a Python function name.")
        self.function, self.max_chars = function, max_chars
        if function:
            self.name = "defines_function"

    def check(self, value: Any, param: Any) -> str | None:
        if not isinstance(value, str):
            return f"code must be a string, got {type(value).__name__}"
        try:
            tree = parse_code_bounded(value, self.max_chars)
        except ParseError as exc:
            return str(exc)
        if self.function and not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == self.function
                                     for n in tree.body):
            return f"the code does not define a top-level function '{self.function}'"
        return None

    def describe(self, param: Any) -> str:
        what = "Python source that compiles"
        return what + (f" and defines a top-level function '{self.function}'" if self.function else "")


class OneOf(Validator):
    """One of the declared choices (the `choice` kind)."""

    name = "choice"

    def __init__(self, choices: Iterable[Any]):
        self.choices = list(choices)

    def check(self, value: Any, param: Any) -> str | None:
        if any(type(value) is type(c) and value == c for c in self.choices):
            return None
        return f"{_preview(value)} is not one of the allowed choices {_preview(self.choices, 300)}"

    def describe(self, param: Any) -> str:
        return f"exactly one of {_preview(self.choices, 2000)}"


class DemosFrom(Validator):
    """An ordered list of {id, input, output} demos, ids distinct and (when given) among `allowed_ids` (training)."""

    name = "demos"

    def __init__(self, allowed_ids: Iterable[Any] | None = None, max_demos: int | None = None):
        self.allowed = None if allowed_ids is None else {str(i) for i in allowed_ids}
        self.max_demos = max_demos

    def check(self, value: Any, param: Any) -> str | None:
        if not isinstance(value, list):
            return f"demos must be a list of {{\"id\", \"input\", \"output\"}} objects, got {type(value).__name__}"
        if self.max_demos is not None and len(value) > self.max_demos:
            return f"{len(value)} demos; at most {self.max_demos} are allowed"
        seen: set[str] = set()
        for i, demo in enumerate(value):
            if not isinstance(demo, dict) or set(demo) != {"id", "input", "output"}:
                keys = sorted(map(str, demo)) if isinstance(demo, dict) else type(demo).__name__
                return f"demo {i} must be an object with exactly the keys id, input, output (got {_preview(keys)})"
            if not all(isinstance(demo[k], str) for k in ("input", "output")) or not isinstance(demo["id"], (str, int)) \
                    or isinstance(demo["id"], bool):
                return f"demo {i}: id must be a string (or integer), input and output strings"
            bad = unencodable(demo["input"] + demo["output"] + str(demo["id"]))
            if bad:
                return f"demo {i}: {bad}"
            did = str(demo["id"])
            if did in seen:
                return f"demo id {_preview(did)} appears twice"
            seen.add(did)
            if self.allowed is not None and did not in self.allowed:
                return f"demo id {_preview(did)} is not a training example (only training-split ids are allowed)"
        return None

    def describe(self, param: Any) -> str:
        limit = f", at most {self.max_demos}" if self.max_demos is not None else ""
        return ('a JSON list of demos [{"id": ..., "input": ..., "output": ...}], ids distinct and taken from the '
                f"training examples only{limit}")


class FunctionValidator(Validator):
    """A task's own check: a function of the value returning the reason it fails, or None (False also fails)."""

    def __init__(self, fn: Callable[[Any], Any], description: str = ""):
        self.fn = fn
        self.name = getattr(fn, "__name__", "custom")
        self.description = description or (fn.__doc__ or "").strip().split("\n")[0]

    def check(self, value: Any, param: Any) -> str | None:
        try:
            verdict = self.fn(value)
        except Exception as exc:  # a task's check that crashes on a hostile value rejects it, it does not abort
            return f"the check raised {type(exc).__name__}: {_preview(str(exc))}"
        if verdict is None or verdict is True:
            return None
        return str(verdict) if isinstance(verdict, str) and verdict else f"the check '{self.name}' failed"

    def describe(self, param: Any) -> str:
        return self.description


def _preview(value: Any, limit: int = 80) -> str:
    """A short, printable, encodable rendering of any value for a reason text."""
    try:
        text = repr(value)
    except Exception:  # a hostile object's repr
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit // 2] + " ... " + text[-(limit // 2):]


def parse_code_bounded(source: str, max_chars: int = MAX_CODE_CHARS) -> ast.Module:
    """Parse and compile Python source with its size and nesting bounded first; ParseError, never a crash."""
    if len(source) > max_chars:
        raise ParseError(f"the code has {len(source)} characters; at most {max_chars} are parsed")
    depth = deepest = 0
    for ch in source:  # brackets inside strings count too: a cheap, conservative bound
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth = max(depth - 1, 0)
    if deepest > MAX_CODE_NESTING:
        raise ParseError(f"the code nests brackets {deepest} deep; at most {MAX_CODE_NESTING} are allowed")
    if _DEEP_CHAIN.search(source):
        raise ParseError("the code chains operators or attributes too deeply to parse safely")
    try:
        tree = ast.parse(source)
        compile(tree, "<parameter>", "exec")
    except SyntaxError as exc:
        raise ParseError(f"the code does not parse: {exc.msg} (line {exc.lineno})") from None
    except (RecursionError, MemoryError):  # the parser's own "too deep" signals; the process is unharmed
        raise ParseError("the code is nested too deeply to parse") from None
    except ValueError as exc:  # e.g. null bytes in the source
        raise ParseError(f"the code does not parse: {exc}") from None
    return tree


def unencodable(text: str) -> str | None:
    """Why `text` cannot be written as UTF-8 (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"the value holds invalid Unicode (a lone surrogate at position {exc.start})"
    return None


def from_config(spec: Any) -> Validator:
    """A Validator from a Validator, a function, or a one-key config dict (max_length, pattern, range, defines)."""
    if isinstance(spec, Validator):
        return spec
    if callable(spec):
        return FunctionValidator(spec)
    if isinstance(spec, dict) and len(spec) >= 1:
        key, arg = next(iter(spec.items()))
        extra = {k: v for k, v in spec.items() if k != key}
        try:
            if key == "max_length":
                return MaxLength(arg, **extra)
            if key == "pattern":
                return Pattern(arg, **extra)
            if key == "range":
                low, high = arg if arg is not None else (None, None)
                return NumberRange(low, high, **extra)
            if key == "defines":
                return Compiles(arg, **extra)
        except TypeError as exc:
            raise ConfigError(f"validator {key}: {exc}.") from None
    raise ConfigError(f"validator {_preview(spec)} is not understood: give a Validator, a function (value) -> reason "
                      "or None, or one of {max_length: N}, {pattern: REGEX}, {range: [LOW, HIGH]}, {defines: NAME}.")


def default_validators(kind: str, choices: Iterable[Any] | None = None, allowed_ids: Iterable[Any] | None = None) -> list[Validator]:
    """The validators every parameter of `kind` gets without asking."""
    if kind == "text":
        return [MaxLength()]
    if kind == "code":
        return [MaxLength(), Compiles()]
    if kind == "number":
        return [NumberRange()]
    if kind == "choice":
        return [OneOf(choices or [])]
    if kind == "demos":
        return [DemosFrom(allowed_ids)]
    return []


def first_failure(validators: Iterable[Validator], value: Any, param: Any) -> ValueRejected | None:
    """The first validator `value` fails (as the error to raise or log), or None when all accept it."""
    if isinstance(value, str):
        bad = unencodable(value)
        if bad:
            return ValueRejected("unicode", bad)
    for v in validators:
        try:
            reason = v.check(value, param)
        except (RecursionError, MemoryError):
            reason = "the value is too deeply nested or too large to check"
        if reason:
            return ValueRejected(v.name, reason)
    return None
