"""The engine: one async protocol around every backend, with cache, concurrency bound, retries, accounting, budget and call log."""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import random
import re
import time
from typing import Any, Protocol, TypeVar

from textgrad_core.engines.accounting import Ledger
from textgrad_core.engines.cache import RequestCache
from textgrad_core.engines.config import EngineConfig
from textgrad_core.engines.context import current_call_context, new_request_id, report_call
from textgrad_core.engines.limits import OVERLOAD_STATUS, Endpoint, RunBound
from textgrad_core.engines.looplocal import LoopLocal
from textgrad_core.engines.sync import run_sync
from textgrad_core.engines.types import LLMReply, LLMRequest
from textgrad_core.errors import (BudgetExceeded, EmptyReplyError, MalformedReplyError, ProviderError,
                                  ReplayMissError)
from textgrad_core.runlog import JsonlLog, redact

T = TypeVar("T")


class TransientProviderError(Exception):
    """A failure worth retrying: 429, 5xx, timeout, dropped connection, malformed or empty 200 reply.

    `reason` names the fault kind for events and the ledger: 429, 5xx, 4xx, timeout, connection, malformed, empty."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None,
                 reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.reason = reason or _reason_of_status(status)


def _reason_of_status(status: int | None) -> str:
    if status == 429:
        return "429"
    if status == 408:
        return "timeout"
    if status is not None and status >= 500:
        return "5xx"
    return "4xx" if status is not None else "connection"


class Backend(Protocol):
    """What a provider implementation supplies: one raw call, no policy.

    A backend may also define `reply_identity() -> dict`: what besides the request decides its replies (the
    endpoint, options, extra headers, a simulator's seed). The engine folds it into every cache key, so two
    endpoints or two seeds never serve each other's replies. Without it, the backend contributes nothing."""

    provider: str
    simulated: bool

    async def send(self, request: LLMRequest, model: str, timeout: float) -> LLMReply: ...


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


MAX_JSON_REPLY_CHARS = 2_000_000  # a reply longer than this is not decoded (it is no parameter update anyone wants)


def parse_json_reply(text: str) -> Any:
    """Decode a JSON reply, tolerating a surrounding code fence; None when it is not JSON (never raises).

    Hostile input is a None, not a crash: non-text, oversized text, nesting deeper than the decoder's recursion
    limit ('[' * 100000), numbers beyond int conversion limits. The fence is stripped without a regex, so a long
    run of whitespace cannot make it quadratic.
    """
    if not isinstance(text, str) or len(text) > MAX_JSON_REPLY_CHARS:
        return None
    body = text.strip()
    if body.startswith("```") and body.endswith("```") and len(body) >= 6:
        body = body[3:-3]
        if body.startswith("json"):
            body = body[4:]
        body = body.strip()
    try:
        return json.loads(body)
    except (ValueError, RecursionError, MemoryError):
        return None


@dataclasses.dataclass
class _Call:
    """One `acomplete`: the request, the model it goes to, and its bookkeeping for logs and events."""

    request: LLMRequest
    model: str
    request_id: str
    context: dict[str, Any]
    attempts: int = 0
    cache_key: str | None = None  # logged, so a resumed run can put back a reply logged but not yet cached


class Engine:
    """An LLM backend wrapped in the run's shared call policy; `role` tags accounting, logs and events.

    `call_log` gets one record per call (answered, served from the cache, or failed); `events` gets one record
    per retry (kind `retry`) and per call that failed after its retries (kind `call_failed`), and replay misses."""

    def __init__(self, config: EngineConfig, backend: Backend, ledger: Ledger | None = None,
                 call_log: JsonlLog | None = None, role: str = "forward", cache: RequestCache | None = None,
                 events: JsonlLog | None = None, endpoint: Endpoint | None = None, run_bound: RunBound | None = None):
        self.config = config
        self.backend = backend
        self.ledger = ledger or Ledger()
        self.call_log = call_log
        self.events = events
        self.role = role
        self.cache = cache
        self._identity: dict[str, Any] | None = None
        # The endpoint's adaptive bound (shared with every engine of the run on the same endpoint; see EngineSet),
        # else one of this engine's own.
        self.endpoint = endpoint or Endpoint(("engine", id(self)), config.max_concurrency, name=backend.provider)
        self.run_bound = run_bound
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

    @property
    def cache_mode(self) -> str:
        """readwrite, replay or off (off also when the engine has no cache)."""
        return self.config.cache.effective_mode if self.cache is not None else "off"

    def reply_identity(self) -> dict[str, Any]:
        """What the backend contributes to the cache key (endpoint, options, seed...); see `Backend`."""
        if self._identity is None:
            contribute = getattr(self.backend, "reply_identity", None)
            self._identity = dict(contribute()) if callable(contribute) else {}
        return self._identity

    def cache_key(self, request: LLMRequest) -> str:
        """The key this engine stores the reply to `request` under."""
        return request.cache_key(self.provider, request.model or self.config.model, self.reply_identity())

    def with_role(self, role: str) -> "Engine":
        """The same engine (same client, cache, endpoint bound), accounted under another role."""
        view = copy.copy(self)
        view.role = role
        return view

    def complete(self, request: LLMRequest) -> LLMReply:
        """Synchronous call; works inside a running event loop too (e.g. a notebook)."""
        return run_sync(self.acomplete(request))

    async def acomplete(self, request: LLMRequest) -> LLMReply:
        """One call through cache, budget, concurrency bound and retries; logged when it completes or fails."""
        call = _Call(request, request.model or self.config.model, new_request_id(), current_call_context())
        if self.cache is None:
            return await self._call(call, None)
        key = call.cache_key = request.cache_key(self.provider, call.model, self.reply_identity())
        cached = self.cache.get(key)
        if cached is not None:
            return self._from_cache(call, cached)
        if self.cache_mode == "replay":
            raise self._replay_miss(call)
        # Identical requests in flight at the same time reach the provider once; the others wait for that reply.
        inflight = self._inflight.get()
        pending = inflight.get(key)
        if pending is not None:
            try:
                stored = await asyncio.shield(pending)
            except ProviderError as exc:  # this caller's call failed too: it gets its own record
                self.ledger.record_error(self.role, self.provider, call.model, call.context.get("phase"))
                self._log(call, error=str(exc))
                raise
            return self._from_cache(call, stored)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        inflight[key] = future
        try:
            reply = await self._claimed_call(call, key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marks it retrieved when nobody else was waiting
            raise
        finally:
            inflight.pop(key, None)
        future.set_result(reply)
        return reply

    def claim_ttl(self) -> float:
        """How long a claim on a prompt stands: the longest one call may take, its retries and backoffs included."""
        c = self.config
        return c.timeout * (c.max_retries + 1) + c.backoff_max * c.max_retries

    async def _claimed_call(self, call: _Call, key: str) -> LLMReply:
        """Pay for `key` once across the processes sharing the cache: claim it, or wait for the process that has."""
        assert self.cache is not None
        ttl = self.claim_ttl()
        give_up = time.time() + ttl  # our own call's budget bounds the wait too
        claimed = False
        while time.time() < give_up:
            held = self.cache.claim(key, ttl)
            if held is None:
                claimed = True
                # Another process may have stored the reply and released its claim between our cache miss and
                # this claim: look once more before paying.
                stored = self.cache.get(key)
                if stored is not None:
                    self.cache.release(key)
                    return self._from_cache(call, stored)
                break
            owner, expires = held
            stored = await self.cache.wait_for_reply(key, owner, min(expires, give_up))
            if stored is not None:
                return self._from_cache(call, stored)
            # released without a reply (its call failed), expired or dead: claim it ourselves
        try:
            return await self._call(call, key)
        finally:
            if claimed:
                self.cache.release(key)

    def _from_cache(self, call: _Call, stored: LLMReply) -> LLMReply:
        reply = stored.model_copy(update={"cache_hit": True, "latency_s": 0.0, "cost_usd": 0.0})
        if call.request.response_format is not None and reply.parsed is None:
            reply = reply.model_copy(update={"parsed": parse_json_reply(reply.text)})
        self.ledger.record(self.role, reply, call.context.get("phase"))
        self._log(call, reply=reply)
        return reply

    def _replay_miss(self, call: _Call) -> ReplayMissError:
        user = " ".join(call.request.user_text.split())  # one line, whatever the prompt's layout
        start = redact(user[:80]) + ("..." if len(user) > 80 else "")
        self._event("replay_miss", call)
        return ReplayMissError(
            f"Replay miss: no recorded reply for role={self.role} tag={call.request.tag!r} model={call.model} "
            f"(last user message starts {start!r}); the run sends a request its recording does not hold (changed "
            f"prompt, config, data or endpoint). Re-record with engine.cache.mode=readwrite, or replay the exact "
            f"recorded config; no provider call was made.")

    async def _call(self, call: _Call, key: str | None) -> LLMReply:
        self.ledger.reserve()
        try:
            reply = await self._send_with_retries(call)
        except BudgetExceeded:
            raise
        except ProviderError as exc:
            self._failed(call, exc)
            raise
        finally:
            self.ledger.release()
        # `reply` is this call's own copy (see _send_with_retries): filled in place, no pydantic round trips.
        if call.request.response_format is not None and reply.parsed is None:
            reply.parsed = parse_json_reply(reply.text)
        prices = self.ledger.prices
        priced = prices.is_priced(self.provider, reply.model) or prices.is_priced(self.provider, call.model)
        reply.cost_usd = prices.cost(self.provider, reply.model, reply.usage, call.model)
        reply.unpriced = not priced
        self.ledger.record(self.role, reply, call.context.get("phase"))
        self._log(call, reply=reply)  # before the cache write: an answered call is logged even if that fails
        if key is not None:
            self.cache.put(key, reply)
        return reply

    async def _attempt(self, call: _Call) -> LLMReply:
        """One request to the backend inside the endpoint's bound (and the run's); feeds the bound's adaptation."""
        limit = self.endpoint.limit
        ticket = await limit.acquire()
        try:
            if self.run_bound is not None:
                async with self.run_bound.slot():
                    reply = await self.backend.send(call.request, call.model, self.config.timeout)
            else:
                reply = await self.backend.send(call.request, call.model, self.config.timeout)
        except TransientProviderError as exc:
            if exc.status in OVERLOAD_STATUS:
                limit.overloaded(ticket)
            if exc.retry_after is not None:
                limit.pause(min(exc.retry_after, self.config.backoff_max))
            raise
        finally:
            limit.release()
        limit.succeeded()
        return reply

    async def _send_with_retries(self, call: _Call) -> LLMReply:
        attempts = self.config.max_retries + 1
        fault: TransientProviderError | None = None
        for attempt in range(1, attempts + 1):
            start = time.perf_counter()
            try:
                reply = await self._attempt(call)
                if self.config.retry_empty and not reply.text.strip():
                    raise TransientProviderError("empty reply text (the provider answered with no content)",
                                                 reason="empty")
            except TransientProviderError as exc:
                fault = exc
            except MalformedReplyError as exc:  # a backend that reports a bad body itself: as transient
                fault = TransientProviderError(str(exc), status=exc.status, reason="malformed")
            except ProviderError as exc:
                exc.attempts = attempt
                raise
            else:
                call.attempts = attempt
                # One shallow copy: the engine fills in cost and parse on its own object, never on one a backend
                # might keep (a scripted or plug-in backend may hand out the same reply twice).
                reply = reply.model_copy()
                reply.latency_s = time.perf_counter() - start
                return reply
            call.attempts = attempt
            if attempt == attempts:
                break
            delay = self._backoff(attempt - 1, fault.retry_after)
            self.ledger.record_fault("retries", fault.reason)
            self._event("retry", call, reason=fault.reason, status=fault.status, attempt=attempt,
                        delay_s=round(delay, 4), error=redact(str(fault)))
            await asyncio.sleep(delay)  # outside the bound: a backing-off call holds no slot
        assert fault is not None
        return self._raise_final(fault, attempts)

    def _raise_final(self, fault: TransientProviderError, attempts: int) -> Any:
        """Raise the error of a call whose every attempt met a transient fault (its type says which)."""
        error_type = {"malformed": MalformedReplyError, "empty": EmptyReplyError}.get(fault.reason, ProviderError)
        error = error_type(self.provider, redact(str(fault)), status=fault.status, attempts=attempts)
        error.reason = fault.reason  # type: ignore[attr-defined]
        raise error

    def _failed(self, call: _Call, exc: ProviderError) -> None:
        """Account, log and report a call that failed after its retries (or at once, when not retryable)."""
        reason = getattr(exc, "reason", None) or (_reason_of_status(exc.status) if exc.status else "other")
        self.ledger.record_error(self.role, self.provider, call.model, call.context.get("phase"))
        self.ledger.record_fault("failed_calls", reason)
        self._log(call, error=str(exc))
        self._event("call_failed", call, reason=reason, status=exc.status, attempt=exc.attempts, delay_s=None,
                    error=str(exc))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is a floor."""
        ceiling = min(self.config.backoff_max, self.config.backoff_base * (2 ** attempt))
        delay = random.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max))
        return delay

    def _event(self, kind: str, call: _Call, **fields: Any) -> None:
        if self.events is None:
            return
        self.events.write({"kind": kind, **call.context, "request_id": call.request_id, "role": self.role,
                           "provider": self.provider, "model": call.model, "tag": call.request.tag, **fields})

    def _log(self, call: _Call, reply: LLMReply | None = None, error: str | None = None) -> None:
        report_call({"request_id": call.request_id, "tag": call.request.tag, "role": self.role,
                     "phase": call.context.get("phase"), "example_id": call.context.get("example_id"),
                     "ok": error is None})
        if self.call_log is None:
            return
        request = call.request
        record: dict[str, Any] = {
            "kind": "llm_call",
            **call.context,
            "request_id": call.request_id,
            "role": self.role,
            "provider": self.provider,
            "model": call.model,
            "simulated": self.simulated,
            "tag": request.tag,
            "messages": [m.model_dump() for m in request.messages],
            "temperature": request.temperature,
            "sample_index": request.sample_index,
            "max_tokens": request.max_tokens,
            "attempts": call.attempts,
            "cache_key": call.cache_key,
        }
        if reply is not None:
            record.update(reply=reply.text, usage=reply.usage.model_dump(), cost_usd=reply.cost_usd,
                          unpriced=reply.unpriced and not reply.cache_hit, latency_s=round(reply.latency_s, 4),
                          cache_hit=reply.cache_hit, finish_reason=reply.finish_reason, error=None)
        else:
            record.update(reply=None, usage=None, cost_usd=0.0, latency_s=None, cache_hit=False, error=error)
        self.call_log.write(record)
