"""Where in a run an LLM call happens (run, step, phase, split, example), for the call log and engine events.

The trainer sets the context around what it does; every engine call made inside (in this task or in any
asyncio task created inside, since tasks copy the context when they are created) carries those fields:

    with call_context(run_id=run_id, step=3, phase="forward", split="train"):
        with call_context(example_id="ex-17"):   # layers over the outer fields
            await engine.acomplete(request)        # its record has all five fields

The context is bookkeeping only: it never reaches the model and never enters the cache key.
"""
from __future__ import annotations

import contextlib
import uuid
from contextvars import ContextVar
from typing import Any, Iterator, Mapping

CALL_CONTEXT_FIELDS = ("run_id", "step", "phase", "split", "example_id")

_EMPTY: Mapping[str, Any] = {name: None for name in CALL_CONTEXT_FIELDS}
_current: ContextVar[Mapping[str, Any]] = ContextVar("textgrad_call_context", default=_EMPTY)


@contextlib.contextmanager
def call_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Layer `fields` over the current call context for the duration of the block (nested blocks merge)."""
    unknown = sorted(set(fields) - set(CALL_CONTEXT_FIELDS))
    if unknown:  # a typo would silently leave the field empty in every record
        raise TypeError(f"call_context got unknown field(s) {unknown}; known fields: {', '.join(CALL_CONTEXT_FIELDS)}")
    merged = {**_current.get(), **fields}
    token = _current.set(merged)
    try:
        yield dict(merged)
    finally:
        _current.reset(token)


def current_call_context() -> dict[str, Any]:
    """The fields of the current call context (every field present, None when unset)."""
    return dict(_current.get())


def new_request_id() -> str:
    """A unique id for one engine call, to join its call record with its retry events."""
    return uuid.uuid4().hex


_sinks: ContextVar[tuple[list, ...]] = ContextVar("textgrad_call_sinks", default=())


@contextlib.contextmanager
def collect_calls() -> Iterator[list[dict[str, Any]]]:
    """Collect {request_id, tag, role, phase, example_id} of every call logged inside the block (nested blocks each
    get them), so what a phase produced can name the calls that produced it."""
    sink: list[dict[str, Any]] = []
    token = _sinks.set((*_sinks.get(), sink))
    try:
        yield sink
    finally:
        _sinks.reset(token)


def report_call(summary: dict[str, Any]) -> None:
    """Hand one logged call to every collector active in this context."""
    for sink in _sinks.get():
        sink.append(summary)
