"""Engine speed and cost at the limit (issue 12): one client and one adaptive bound per endpoint, a run-wide bound,
Retry-After pausing the endpoint, and processes sharing a cache file paying once for a prompt in flight.

Everything runs the real SDK clients against the local provider server; every load loop is bounded in count, and
no test asserts a wall time (bounds are counts of requests, peaks in flight, or orderings)."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textgrad_core.engines import AdaptiveLimit, EngineSet, LLMRequest, build_engine
from textgrad_core.engines import clients
from textgrad_core.errors import ConfigError

try:
    from provider_server import Reply, Status
except ImportError:  # tests/ imported as a package
    from tests.provider_server import Reply, Status

KEY = "-".join(["sk", "Zp4Rt8Wq2Lm6Xc9Vb1Nk"])


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def cfg(server, **overrides) -> dict:
    base = dict(provider="openai", model="gpt-4o-mini", base_url=server.openai_base_url, timeout=5.0, max_retries=3,
                backoff_base=0.01, backoff_max=2.0, cache={"enabled": False})
    base.update(overrides)
    return base


def wait_idle(server, limit: int = 300) -> None:
    for _ in range(limit):
        if not server.in_flight:
            return
        time.sleep(0.01)


# --------------------------------------------------------------------------- one bound and one client per endpoint


def test_roles_with_different_configs_on_one_endpoint_share_one_bound_and_one_client(server):
    wait_idle(server)
    server.default = Reply(delay=0.03)
    engines = EngineSet({
        "forward": cfg(server, max_concurrency=4),
        "judge": cfg(server, model="gpt-4.1-mini", max_concurrency=4, options={"headers": {"X-Role": "judge"}}),
        "optimizer": cfg(server, model="gpt-4o", max_concurrency=3, timeout=7.0),
        "credit": cfg(server, max_concurrency=4, max_retries=1),
    })
    assert len(engines.endpoints) == 1  # four configs, one endpoint
    assert engines["judge"].backend is not engines["forward"].backend
    before = clients.clients_built()

    async def main():
        await asyncio.gather(*(engines[role].acomplete(LLMRequest.chat(f"{role} {i}", temperature=0.1 * i))
                               for i in range(6) for role in ("forward", "judge", "optimizer", "credit", "eval")))

    asyncio.run(main())
    assert len(server.requests) == 30
    assert server.peak_in_flight == 3  # the smallest max_concurrency of the roles is the endpoint's ceiling
    assert clients.clients_built() - before == 1  # one SDK client for every role on the endpoint
    judged = [r for r in server.requests if r["json"]["model"] == "gpt-4.1-mini"]
    assert len(judged) == 6 and all(r["headers"].get("x-role") == "judge" for r in judged)
    assert not any("x-role" in r["headers"] for r in server.requests if r["json"]["model"] != "gpt-4.1-mini")


def test_run_wide_bound_caps_calls_over_every_endpoint(server):
    wait_idle(server)
    server.default = Reply(delay=0.03)
    engines = EngineSet({"forward": cfg(server, max_concurrency=4),
                         "optimizer": dict(provider="anthropic", model="claude-haiku-4-5",
                                           base_url=server.anthropic_base_url, max_concurrency=4, timeout=5.0,
                                           cache={"enabled": False})},
                        max_in_flight=3)
    assert len(engines.endpoints) == 2

    async def main():
        await asyncio.gather(*(engines[role].acomplete(LLMRequest.chat(f"{role} {i}"))
                               for i in range(8) for role in ("forward", "optimizer")))

    asyncio.run(main())
    assert len(server.requests) == 16 and {r["provider"] for r in server.requests} == {"openai", "anthropic"}
    assert server.peak_in_flight == 3


@pytest.mark.parametrize("bad", [0, -2, 1.5, "8", True])
def test_bad_run_wide_bound_is_one_config_error(bad):
    with pytest.raises(ConfigError) as err:
        EngineSet({"forward": {"provider": "scripted"}}, max_in_flight=bad)
    message = str(err.value)
    assert "concurrency.max_in_flight" in message and ">= 1" in message and "\n" not in message


# --------------------------------------------------------------------------- adaptive bound


def test_a_429_halves_the_endpoint_bound_and_answers_raise_it_again(server):
    wait_idle(server)
    engines = EngineSet({"forward": cfg(server, max_concurrency=8)})
    engine = engines["forward"]

    async def main():
        server.script(Status(429))  # the first call meets a 429 (no Retry-After), its retry is answered
        await engine.acomplete(LLMRequest.chat("first"))
        limit = engine.endpoint.limit
        assert limit.decreases == 1 and limit.size == 4
        server.reset()
        server.default = Reply(delay=0.05)
        await asyncio.gather(*(engine.acomplete(LLMRequest.chat(f"burst {i}")) for i in range(8)))
        return limit

    limit = asyncio.run(main())
    # Eight calls at once after the 429: fewer than the ceiling went out together (the old bound sent 8).
    assert 4 <= server.peak_in_flight < 8
    assert limit.limit > 4  # every answer raised it


def test_overload_statuses_decrease_but_a_500_does_not(server):
    wait_idle(server)
    engine = build_engine(cfg(server, max_concurrency=8))

    async def main():
        server.script(Status(503), Status(529), Status(500))
        for prompt in ("a", "b", "c"):
            await engine.acomplete(LLMRequest.chat(prompt))
        return engine.endpoint.limit

    limit = asyncio.run(main())
    assert limit.decreases == 2  # 503 and 529 are overload; a 500 is a fault, not a signal to slow down


def test_adaptive_limit_floor_ceiling_and_one_decrease_per_burst():
    async def main():
        limit = AdaptiveLimit(ceiling=8)
        tickets = [await limit.acquire() for _ in range(8)]
        for t in tickets:  # eight 429s to calls sent together: one decrease, not eight
            limit.overloaded(t)
            limit.release()
        assert limit.size == 4 and limit.decreases == 1
        for _ in range(10):  # each new burst halves again, never below the floor
            limit.overloaded(await limit.acquire())
            limit.release()
        assert limit.size == 1 and limit.limit == 1.0
        for _ in range(200):  # slow increase back up, capped at the ceiling
            await limit.acquire()
            limit.release()
            limit.succeeded()
        assert limit.size == 8 and limit.limit == 8.0
        assert limit.peak_in_flight == 8

    asyncio.run(main())


def test_cancelled_waiters_give_their_slot_back():
    async def main():
        limit = AdaptiveLimit(ceiling=1)
        await limit.acquire()
        waiter = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        limit.release()
        assert limit.in_flight == 0
        await asyncio.wait_for(limit.acquire(), timeout=5)
        assert limit.in_flight == 1

    asyncio.run(main())


def test_retry_after_pauses_every_call_to_the_endpoint(server):
    wait_idle(server)
    pause = 0.4
    engine = build_engine(cfg(server, max_concurrency=4))
    server.script(Status(429, retry_after=pause))

    async def main():
        first = asyncio.ensure_future(engine.acomplete(LLMRequest.chat("rate limited")))
        for _ in range(500):  # until the 429 has been answered and seen by the client (bounded)
            await asyncio.sleep(0.005)
            if engine.endpoint.limit.pauses:
                break
        assert engine.endpoint.limit.pauses == 1
        others = [engine.acomplete(LLMRequest.chat(f"other {i}")) for i in range(3)]
        await asyncio.gather(first, *others)

    asyncio.run(main())
    assert len(server.requests) == 5 and server.requests[0]["status"] == 429
    t429 = server.requests[0]["t"]
    # No request reached the endpoint during its pause: not the retry, and not the three calls made after it.
    during = [r for r in server.requests[1:] if r["t"] < t429 + 0.9 * pause]
    assert during == []


# --------------------------------------------------------------------------- start-up


def test_backends_import_the_sdk_in_the_background_and_share_the_client(server, tmp_path):
    script = f"""
import asyncio, sys, threading
from textgrad_core.engines import EngineSet, LLMRequest, clients
url = {server.openai_base_url!r}
cfg = lambda **kw: dict(provider="openai", model="m", base_url=url, cache={{"enabled": False}}, **kw)
engines = EngineSet({{"forward": cfg(), "credit": cfg(max_retries=1),
                      "optimizer": cfg(timeout=9.0), "judge": cfg(options={{"headers": {{"X-J": "1"}}}})}})
names = [t.name for t in threading.enumerate()] + [t.name for t in clients._threads.values()]
assert "textgrad-import-openai" in names, names
async def main():
    await asyncio.gather(*(engines[r].acomplete(LLMRequest.chat(r)) for r in ("forward", "credit", "optimizer", "judge")))
asyncio.run(main())
print("clients", clients.clients_built(), "openai" in sys.modules)
"""
    import subprocess
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": KEY}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["clients", "1", "True"]
    assert len(server.requests) == 4
