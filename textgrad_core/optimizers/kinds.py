"""What each parameter kind means to an optimizer: how its value is shown, the contract its prompt states, and how a
reply becomes a value of that kind (or a clear rejection — never an exception other than ParseError)."""
from __future__ import annotations

import json
import math
from typing import Any

from textgrad_core import prompts
from textgrad_core.engines.base import parse_json_reply
from textgrad_core.errors import ParseError
from textgrad_core.optimizers.budget import clip_middle
from textgrad_core.validators import ValueRejected, _preview
from textgrad_core.variable import Parameter

MAX_NUMBER_CHARS = 100  # a number written with more characters than this is not a number anyone meant


def render_value(param: Parameter, value: Any = None) -> str:
    """A value of `param` as prompts show it: demos as indented JSON, everything else as its text."""
    value = param.value if value is None else value
    if param.kind == "demos":
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return str(value)


def contract(param: Parameter, pool_chars: int = 8000) -> str:
    """The kind's contract and every validator's requirement, one line each (empty for a plain text parameter)."""
    lines: list[str] = []
    if param.kind == "choice":
        lines.append(prompts.KIND_CHOICE.format(choices=", ".join(json.dumps(c, default=str) for c in param.choices or [])))
    elif param.kind == "demos":
        lines.append(prompts.KIND_DEMOS)
        if param.pool:
            lines.append(prompts.KIND_DEMOS_POOL.format(pool=clip_middle(json.dumps(param.pool, ensure_ascii=False, default=str), pool_chars)))
        elif param.allowed_ids is not None:
            lines.append(prompts.KIND_DEMOS_IDS.format(ids=clip_middle(", ".join(map(str, param.allowed_ids)), pool_chars)))
    elif param.kind == "number":
        lines.append(prompts.KIND_NUMBER)
    for validator in param.validators:
        text = validator.describe(param)
        if text and text not in lines and validator.name not in ("choice", "demos"):
            lines.append(text)
    return "\n".join(f"- {line}" for line in lines)


def json_schema(param: Parameter) -> dict[str, Any]:
    """The JSON schema of one parameter's value in a structured (joint) reply."""
    if param.kind == "number":
        return {"type": "number"}
    if param.kind == "choice":
        return {"enum": list(param.choices or [])}
    if param.kind == "demos":
        return {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": ["id", "input", "output"],
                                           "properties": {"id": {"type": ["string", "integer"]}, "input": {"type": "string"},
                                                          "output": {"type": "string"}}}}
    return {"type": "string"}


def _number(param: Parameter, value: Any) -> float | int:
    if isinstance(value, bool):
        raise ParseError(f"'{param.id}' is a number, got a boolean")
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_NUMBER_CHARS:
            raise ParseError(f"'{param.id}' is a number, got {len(text)} characters of text")
        value = text
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ParseError(f"'{param.id}' is a number, got {_preview(value)}") from None
    if math.isfinite(number) and number.is_integer() and isinstance(param.value, int) and not isinstance(param.value, bool):
        return int(number)
    return number


def _choice(param: Parameter, value: Any) -> Any:
    choices = list(param.choices or [])
    for c in choices:  # the exact object first, then its text (a reply is text), then the text ignoring case
        if type(c) is type(value) and c == value:
            return c
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        same = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool) and c == value]
        if same:
            return same[0]
    text = str(value).strip() if isinstance(value, (str, int, float)) else None
    if text is not None and len(text) <= 1000:
        for match in ([c for c in choices if str(c) == text], [c for c in choices if str(c).lower() == text.lower()]):
            if len(match) == 1:
                return match[0]
    raise ValueRejected("choice", f"{_preview(value)} is not one of the allowed choices for '{param.id}': "
                                  f"{_preview(choices, 300)}")


def _demos(param: Parameter, value: Any) -> list[Any]:
    if isinstance(value, str):
        decoded = parse_json_reply(value)
        if decoded is None:
            raise ParseError(f"'{param.id}' is a list of demos: write it as a JSON list of "
                             '{"id": ..., "input": ..., "output": ...} objects')
        value = decoded
    if not isinstance(value, list):
        raise ParseError(f"'{param.id}' is a list of demos, got a {type(value).__name__}")
    return value


def coerce_value(param: Parameter, value: Any) -> Any:
    """A proposed value converted to the parameter's kind and checked by every validator; ParseError when it fails.

    ValueRejected (a ParseError) names the validator: the optimizer's re-ask quotes it, the rejection event logs it.
    """
    try:
        if param.kind == "number":
            converted: Any = _number(param, value)
        elif param.kind == "choice":
            converted = _choice(param, value)
        elif param.kind == "demos":
            converted = _demos(param, value)
        elif isinstance(value, str):
            converted = value
        else:
            raise ParseError(f"'{param.id}' is {param.kind}, got a {type(value).__name__}")
        failure = param.rejection(converted)
    except (RecursionError, MemoryError):  # a hostile, deeply nested value: a rejection like any other
        raise ParseError(f"the value proposed for '{param.id}' is nested too deeply or too large") from None
    if failure is not None:
        if failure.validator == "compiles":  # the long-standing wording for code that does not parse
            raise ValueRejected(failure.validator, f"the new code for '{param.id}' {failure.reason.removeprefix('the code ')}")
        raise failure
    return converted
