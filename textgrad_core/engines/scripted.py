"""A scripted backend for tests: replies come from a function or a queue, and every request is recorded."""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Callable, Iterable

from textgrad_core.engines.types import LLMReply, LLMRequest, Usage


class ScriptedBackend:
    """Answers from `reply_fn(request)` or from a queue of texts; records requests and peak concurrency."""

    provider = "scripted"
    simulated = True

    def __init__(self, reply_fn: Callable[[LLMRequest], str] | None = None, replies: Iterable[str] = (),
                 delay: float = 0.0):
        self.reply_fn = reply_fn
        self.queue: deque[str] = deque(replies)
        self.delay = delay
        self.requests: list[LLMRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()

    async def send(self, request: LLMRequest, model: str, timeout: float) -> LLMReply:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            with self._lock:
                text = self.queue.popleft() if self.queue else None
            if text is None:
                if self.reply_fn is None:
                    raise AssertionError(f"ScriptedBackend has no reply left for request: {request.user_text[:200]}")
                text = self.reply_fn(request)
            usage = Usage(input_tokens=sum(len(m.content.split()) for m in request.messages), output_tokens=len(text.split()))
            return LLMReply(text=text, model=model, provider=self.provider, usage=usage, finish_reason="stop")
        finally:
            with self._lock:
                self.in_flight -= 1

    def requests_tagged(self, prefix: str) -> list[LLMRequest]:
        """The recorded requests whose tag starts with `prefix`."""
        return [r for r in self.requests if r.tag.startswith(prefix)]
