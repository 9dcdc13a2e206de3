"""One-line problems from config values: pydantic models and constructor signatures, checked key by key.

Each problem names the dotted key, the value given and what is allowed ("trainer.batch_size=0: must be an integer
>= 1"), or, for an unknown key, the closest valid one ("unknown key trainer.batchsize — did you mean
trainer.batch_size?"). Nothing here knows the sections of a run's config; experiments.validate does.
"""
from __future__ import annotations

import difflib
import inspect
import json
import re
import types
import typing
from typing import Any, Iterable, Literal, Mapping, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, TypeAdapter, ValidationError

from textgrad_core.errors import ConfigError


_LOOKS_TYPED = re.compile(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?|true|false|null|none", re.IGNORECASE)


def show(value: Any) -> str:
    """A value as a user would type it on the command line (null, true, [1, 2]); long values are cut."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # Quoted when it would read as another type: '5' is the string, 5 the number.
        text = f"'{value}'" if not value or _LOOKS_TYPED.fullmatch(value.strip()) else value
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def join(prefix: str, key: Any) -> str:
    """A dotted key path: 'trainer' + 'batch_size' -> 'trainer.batch_size'."""
    return f"{prefix}.{key}" if prefix else str(key)


def unknown_key(path: str, key: str, valid: Iterable[str], what: str = "key") -> str:
    """The problem line of an unknown key, with the closest valid key when one is close enough."""
    valid = sorted(str(v) for v in valid)
    full = join(path, key)
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown {what} {full} — did you mean {join(path, close[0])}?"
    listed = ", ".join(valid) if valid else "none"
    return f"unknown {what} {full}; valid {what}s{' of ' + path if path else ''}: {listed}"


def describe(annotation: Any, metadata: Iterable[Any] = ()) -> str:
    """What a type annotation (with its constraints) allows, in words: 'an integer >= 1 or null'."""
    metadata = list(metadata)
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = get_args(annotation)
        return describe(base, metadata + list(extra))
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        members = [a for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(describe(a, metadata) for a in members))
        return text + (" or null" if len(members) < len(args) else "")
    if origin is Literal:
        return "one of " + ", ".join(show(v) for v in get_args(annotation))
    if annotation is type(None):
        return "null"
    if annotation in (int, float):
        return _bounded("an integer" if annotation is int else "a number", metadata)
    names = {bool: "true or false", str: "a string"}
    if annotation in names:
        return names[annotation]
    if origin in (dict, Mapping) or annotation in (dict, Mapping) or _is_model(annotation):
        return "a mapping"
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
        return "a list"
    return "a value of type " + getattr(annotation, "__name__", str(annotation)) if annotation is not Any else "any value"


def _bounded(noun: str, metadata: list[Any]) -> str:
    low = high = None
    for m in metadata:
        if isinstance(m, annotated_types.Interval):
            metadata = metadata + [annotated_types.Ge(m.ge) if m.ge is not None else None,
                                   annotated_types.Gt(m.gt) if m.gt is not None else None,
                                   annotated_types.Le(m.le) if m.le is not None else None,
                                   annotated_types.Lt(m.lt) if m.lt is not None else None]
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            low = (">=", m.ge)
        elif isinstance(m, annotated_types.Gt):
            low = (">", m.gt)
        elif isinstance(m, annotated_types.Le):
            high = ("<=", m.le)
        elif isinstance(m, annotated_types.Lt):
            high = ("<", m.lt)
    if low and high and low[0] == ">=" and high[0] == "<=":
        return f"{noun} in [{low[1]}, {high[1]}]"
    return " and ".join([f"{noun} {low[0]} {low[1]}" if low else noun] + ([f"{high[0]} {high[1]}"] if high else []))


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field_at(annotation: Any, loc: tuple[Any, ...]) -> tuple[Any, list[Any]] | None:
    """The annotation and constraints of the field that a pydantic error location points at (None: unknown)."""
    metadata: list[Any] = []
    for part in loc:
        annotation = _strip_optional(annotation)
        if _is_model(annotation) and part in annotation.model_fields:
            info = annotation.model_fields[part]
            annotation, metadata = info.annotation, list(info.metadata)
        elif get_origin(annotation) in (dict, Mapping) and len(get_args(annotation)) == 2:
            annotation, metadata = get_args(annotation)[1], []
        elif get_origin(annotation) in (list, tuple) and isinstance(part, int):
            annotation, metadata = get_args(annotation)[0], []
        else:
            return None  # a union member tag or a dict key of an untyped mapping: stop at the parent
    return annotation, metadata


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _key_part(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a location that names keys (pydantic appends union member tags like 'int' or 'list[int]')."""
    out: list[Any] = []
    for part in loc:
        if out and isinstance(part, str) and ("[" in part or part in _UNION_TAGS):
            break
        out.append(part)
    return tuple(out)


_UNION_TAGS = ("int", "float", "str", "bool", "none", "dict", "list", "tuple")


def pydantic_problems(exc: ValidationError, root: Any, prefix: str, data: Any) -> list[str]:
    """One problem line per error of a pydantic validation of `data` against `root` (a model or an annotation)."""
    problems: list[str] = []
    for error in exc.errors():
        loc = _key_part(tuple(error["loc"]))
        path = prefix
        for part in loc:
            path = join(path, part)
        kind = error["type"]
        if kind == "extra_forbidden":
            parent = _field_at(root, loc[:-1])
            model = _strip_optional(parent[0]) if parent else None
            parent_path = prefix
            for part in loc[:-1]:
                parent_path = join(parent_path, part)
            problems.append(unknown_key(parent_path, str(loc[-1]), model.model_fields if _is_model(model) else []))
            continue
        if kind == "missing":
            problems.append(f"missing key {path}")
            continue
        original = (error.get("ctx") or {}).get("error")
        value = _value_at(data, loc)
        if isinstance(original, ConfigError):  # a validator's own message already names the fix
            problems.append(f"{path}={show(value)}: {original}")
            continue
        field = _field_at(root, loc)
        allowed = describe(*field) if field else error["msg"].lower()
        line = f"{path}={show(value)}: must be {allowed}"
        if field and get_origin(_strip_optional(field[0])) is Literal and isinstance(value, str):
            close = difflib.get_close_matches(value, [str(v) for v in get_args(_strip_optional(field[0]))], n=1)
            if close:
                line += f" (did you mean {close[0]}?)"
        problems.append(line)
    return problems


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def model_problems(model: type[BaseModel], data: Any, prefix: str) -> list[str]:
    """Problems of `data` (a mapping) as `model` (lax, as the run itself parses it)."""
    if not isinstance(data, Mapping):
        return [f"{prefix}={show(data)}: must be a mapping of {', '.join(model.model_fields)}"]
    try:
        model.model_validate(dict(data))
    except ValidationError as exc:
        return pydantic_problems(exc, model, prefix, data)
    return []


def value_problems(annotation: Any, value: Any, path: str, strict: bool = False) -> list[str]:
    """Problems of one value against a type annotation."""
    try:
        TypeAdapter(annotation).validate_python(value, strict=strict)
    except ValidationError as exc:
        return pydantic_problems(exc, annotation, path, value) if exc.errors() else []
    except Exception:  # noqa: BLE001  (an annotation pydantic cannot build a schema for: not checked)
        return []
    return []


def signature_problems(target: Any, options: Mapping[str, Any], prefix: str, skip: Iterable[str] = ()) -> list[str]:
    """Problems of `options` as keyword arguments of `target` (a class or function): unknown, missing, wrong type.

    Values are checked strictly against the parameters' annotations: the constructor receives them as they are.
    """
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []  # a builtin or C extension without a signature: the constructor checks for itself
    skip = set(skip)
    params = {n: p for n, p in signature.parameters.items()
              if n not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    hints = _type_hints(target)
    problems = []
    for key in options:
        if key not in params and not open_ended:
            problems.append(unknown_key(prefix, key, params, what="option"))
    for name, param in params.items():
        if name not in options:
            if param.default is param.empty:
                problems.append(f"missing option {join(prefix, name)} (required by {_label(target)})")
            continue
        if name in hints:
            problems += value_problems(hints[name], options[name], join(prefix, name), strict=True)
    return problems


def _label(target: Any) -> str:
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"


def _type_hints(target: Any) -> dict[str, Any]:
    """The resolved annotations of a constructor's parameters; one that cannot be resolved is left out (unchecked)."""
    function = target.__init__ if isinstance(target, type) else target
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:  # noqa: BLE001  (a TYPE_CHECKING-only name: resolve what can be, one by one)
        pass
    namespace = dict(getattr(inspect.getmodule(function), "__dict__", {}))
    out = {}
    for name, annotation in getattr(function, "__annotations__", {}).items():
        try:
            out[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
        except Exception:  # noqa: BLE001
            continue
    return out


__all__ = ["describe", "join", "model_problems", "show", "signature_problems", "unknown_key", "value_problems"]
