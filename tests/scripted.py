"""Shared test helper: an engine over the scripted backend."""
from __future__ import annotations

from typing import Callable

from textgrad_core.engines import Engine, JsonlLog, LLMRequest, ScriptedBackend, build_engine


def scripted_engine(reply_fn: Callable[[LLMRequest], str] | None = None, replies: list[str] = (), delay: float = 0.0,
                    max_concurrency: int = 16, call_log: JsonlLog | None = None) -> tuple[Engine, ScriptedBackend]:
    """An engine whose replies come from `reply_fn` or a queue, with every request recorded on the backend."""
    backend = ScriptedBackend(reply_fn=reply_fn, replies=replies, delay=delay)
    engine = build_engine({"provider": "scripted", "model": "scripted-1", "max_concurrency": max_concurrency,
                           "cache": {"enabled": False}}, backend=backend, call_log=call_log)
    return engine, backend
