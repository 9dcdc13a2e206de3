"""Concurrency bounds: one adaptive bound per endpoint (shared by every role that calls it) and an optional run-wide one.

An endpoint's bound starts at its ceiling (`engine.max_concurrency`) and adapts like TCP congestion control: a
429 or an overload status (503, 529) halves it (multiplicative decrease, never below 1), each answered call
raises it by 1/limit (about +1 per full window of answers) back up to the ceiling. A `Retry-After` pauses the
whole endpoint: every call to it waits until the pause is over, not only the call that got it.

Only the scheduling of calls depends on this; what is sent never does.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import AsyncIterator, Hashable

from textgrad_core.engines.looplocal import LoopLocal

OVERLOAD_STATUS = frozenset({429, 503, 529})
DECREASE = 0.5


class AdaptiveLimit:
    """An asyncio bound whose size adapts between 1 and `ceiling`; FIFO; belongs to one event loop."""

    def __init__(self, ceiling: int, floor: int = 1):
        self.ceiling = max(int(ceiling), 1)
        self.floor = max(min(int(floor), self.ceiling), 1)
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.decreases = 0
        self.pauses = 0
        self._epoch = 0  # bumped by each decrease: answers to calls sent before it do not decrease again
        self._paused_until = 0.0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    @property
    def size(self) -> int:
        """How many calls may be in flight now."""
        return max(int(self.limit), self.floor)

    async def acquire(self) -> int:
        """Wait for a slot and for any pause to end; returns the ticket to pass to `overloaded`."""
        if self.in_flight < self.size and not self._waiters:
            self._take()
        else:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut  # the releaser hands its slot over: in_flight already counts us
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.release()  # handed a slot just as we were cancelled: give it back
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(fut)
                raise
        try:
            await self._wait_out_pause()
        except BaseException:
            self.release()
            raise
        return self._epoch

    async def _wait_out_pause(self) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._paused_until - loop.time()) > 0:
            await asyncio.sleep(wait)

    def _take(self) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def release(self) -> None:
        """Give a slot back: to the first waiter when the bound has room, else to the pool."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.size:
            fut = self._waiters.popleft()
            if not fut.done():
                self._take()
                fut.set_result(None)

    def succeeded(self) -> None:
        """An answered call: additive increase, about +1 per window of `limit` answers, up to the ceiling."""
        if self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            self._wake()

    def overloaded(self, ticket: int) -> None:
        """A 429/503/529 to a call sent with `ticket`: halve the bound, once per burst of such answers."""
        if ticket >= self._epoch:
            self.limit = max(float(self.floor), self.limit * DECREASE)
            self._epoch += 1
            self.decreases += 1

    def pause(self, seconds: float) -> None:
        """Hold every call to this endpoint for `seconds` (a server's Retry-After); pauses never shorten."""
        if seconds > 0:
            until = asyncio.get_running_loop().time() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self.pauses += 1


class Endpoint:
    """One provider endpoint (provider, base URL, key variable): its adaptive bound, one per event loop."""

    def __init__(self, key: Hashable, ceiling: int, name: str = ""):
        self.key = key
        self.ceiling = ceiling
        self.name = name  # for logs: provider and URL, never the key
        self._limits: LoopLocal[AdaptiveLimit] = LoopLocal(lambda: AdaptiveLimit(self.ceiling))

    @property
    def limit(self) -> AdaptiveLimit:
        """This loop's bound (call from inside the loop)."""
        return self._limits.get()

    def lower_ceiling(self, ceiling: int) -> None:
        """Roles that share the endpoint with different max_concurrency: the smallest wins (set before any call)."""
        self.ceiling = min(self.ceiling, ceiling)


class RunBound:
    """At most `max_in_flight` calls in flight over every endpoint of a run (concurrency.max_in_flight)."""

    def __init__(self, max_in_flight: int):
        self.max_in_flight = max_in_flight
        self._semaphores: LoopLocal[asyncio.Semaphore] = LoopLocal(lambda: asyncio.Semaphore(max_in_flight))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the run's slots."""
        async with self._semaphores.get():
            yield
