"""The engine: one async protocol around every backend, with cache, concurrency bound, retries, accounting, budget and call log."""
from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import time
import weakref
from typing import Any, Callable, Generic, Protocol, TypeVar

from textgrad_core.engines.accounting import Ledger
from textgrad_core.engines.cache import RequestCache
from textgrad_core.engines.config import EngineConfig
from textgrad_core.engines.sync import run_sync
from textgrad_core.engines.types import LLMReply, LLMRequest
from textgrad_core.errors import BudgetExceeded, ProviderError
from textgrad_core.runlog import JsonlLog, redact

T = TypeVar("T")


class TransientProviderError(Exception):
    """A failure worth retrying: 429, 5xx, timeout, dropped connection."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Backend(Protocol):
    """What a provider implementation supplies: one raw call, no policy."""

    provider: str
    simulated: bool

    async def send(self, request: LLMRequest, model: str, timeout: float) -> LLMReply: ...


class LoopLocal(Generic[T]):
    """One object per running event loop (asyncio primitives and HTTP clients are bound to their loop)."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._objects: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T]" = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        obj = self._objects.get(loop)
        if obj is None:
            obj = self._objects[loop] = self._factory()
        return obj


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_json_reply(text: str) -> Any:
    """Decode a JSON reply, tolerating a surrounding code fence; None when it is not JSON."""
    body = text.strip()
    match = _FENCE.match(body)
    if match:
        body = match.group(1)
    try:
        return json.loads(body)
    except ValueError:
        return None


class Engine:
    """An LLM backend wrapped in the run's shared call policy; `role` tags accounting and logs."""

    def __init__(self, config: EngineConfig, backend: Backend, ledger: Ledger | None = None,
                 call_log: JsonlLog | None = None, role: str = "forward", cache: RequestCache | None = None):
        self.config = config
        self.backend = backend
        self.ledger = ledger or Ledger()
        self.call_log = call_log
        self.role = role
        self.cache = cache
        self._semaphore: LoopLocal[asyncio.Semaphore] = LoopLocal(lambda: asyncio.Semaphore(config.max_concurrency))
        self._inflight: LoopLocal[dict[str, asyncio.Future]] = LoopLocal(dict)

    @property
    def provider(self) -> str:
        return self.backend.provider

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def simulated(self) -> bool:
        return bool(getattr(self.backend, "simulated", False))

    def with_role(self, role: str) -> "Engine":
        """The same engine (same client, cache, concurrency bound), accounted under another role."""
        view = copy.copy(self)
        view.role = role
        return view

    def complete(self, request: LLMRequest) -> LLMReply:
        """Synchronous call; works inside a running event loop too (e.g. a notebook)."""
        return run_sync(self.acomplete(request))

    async def acomplete(self, request: LLMRequest) -> LLMReply:
        """One call through cache, budget, concurrency bound and retries; logged when it completes."""
        model = request.model or self.config.model
        if self.cache is None:
            return await self._call(request, model, None)
        key = request.cache_key(self.provider, model)
        cached = self.cache.get(key)
        if cached is not None:
            return self._from_cache(request, model, cached)
        # Identical requests in flight at the same time reach the provider once; the others wait for that reply.
        inflight = self._inflight.get()
        pending = inflight.get(key)
        if pending is not None:
            return self._from_cache(request, model, await asyncio.shield(pending))
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        inflight[key] = future
        try:
            reply = await self._call(request, model, key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marks it retrieved when nobody else was waiting
            raise
        finally:
            inflight.pop(key, None)
        future.set_result(reply)
        return reply

    def _from_cache(self, request: LLMRequest, model: str, stored: LLMReply) -> LLMReply:
        reply = stored.model_copy(update={"cache_hit": True, "latency_s": 0.0, "cost_usd": 0.0})
        self.ledger.record(self.role, reply)
        self._log(request, model, reply=reply)
        return reply

    async def _call(self, request: LLMRequest, model: str, key: str | None) -> LLMReply:
        self.ledger.reserve()
        try:
            async with self._semaphore.get():
                reply = await self._send_with_retries(request, model)
        except BudgetExceeded:
            raise
        except ProviderError as exc:
            self.ledger.record_error(self.role, self.provider, model)
            self._log(request, model, error=str(exc))
            raise
        finally:
            self.ledger.release()
        if request.response_format is not None and reply.parsed is None:
            reply = reply.model_copy(update={"parsed": parse_json_reply(reply.text)})
        reply = reply.model_copy(update={"cost_usd": self.ledger.prices.cost(self.provider, reply.model, reply.usage)})
        if key is not None:
            self.cache.put(key, reply)
        self.ledger.record(self.role, reply)
        self._log(request, model, reply=reply)
        return reply

    async def _send_with_retries(self, request: LLMRequest, model: str) -> LLMReply:
        attempts = self.config.max_retries + 1
        last: TransientProviderError | None = None
        for attempt in range(attempts):
            start = time.perf_counter()
            try:
                reply = await self.backend.send(request, model, self.config.timeout)
            except TransientProviderError as exc:
                last = exc
                if attempt + 1 == attempts:
                    break
                await asyncio.sleep(self._backoff(attempt, exc.retry_after))
                continue
            except ProviderError as exc:
                exc.attempts = attempt + 1
                raise
            return reply.model_copy(update={"latency_s": time.perf_counter() - start})
        assert last is not None
        raise ProviderError(self.provider, redact(str(last)), status=last.status, attempts=attempts)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is a floor."""
        ceiling = min(self.config.backoff_max, self.config.backoff_base * (2 ** attempt))
        delay = random.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max))
        return delay

    def _log(self, request: LLMRequest, model: str, reply: LLMReply | None = None, error: str | None = None) -> None:
        if self.call_log is None:
            return
        record: dict[str, Any] = {
            "kind": "llm_call",
            "role": self.role,
            "provider": self.provider,
            "model": model,
            "simulated": self.simulated,
            "tag": request.tag,
            "messages": [m.model_dump() for m in request.messages],
            "temperature": request.temperature,
            "sample_index": request.sample_index,
        }
        if reply is not None:
            record.update(reply=reply.text, usage=reply.usage.model_dump(), cost_usd=reply.cost_usd,
                          latency_s=round(reply.latency_s, 4), cache_hit=reply.cache_hit, finish_reason=reply.finish_reason,
                          error=None)
        else:
            record.update(reply=None, error=error, cache_hit=False)
        self.call_log.write(record)
