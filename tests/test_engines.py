"""Our engine layer (build_engine / EngineSet / Engine) driving the REAL openai and anthropic SDK clients
against the local fake provider server: usage and cost, retries, timeouts, malformed bodies, the concurrency
bound, the persistent cache (also across processes), the budget, secret redaction and configuration errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) only puts tests/ on the path
    sys.path.insert(0, str(ROOT))

from textgrad_core.engines import (BudgetConfig, EngineSet, JsonlLog, Ledger, LLMRequest, ResponseFormat,
                                   build_engine)
from textgrad_core.engines.accounting import PriceTable
from textgrad_core.engines.types import Usage
from textgrad_core.errors import (BudgetExceeded, CacheError, ConfigError, MalformedReplyError, MissingAPIKeyError,
                                  ProviderError)

try:
    from provider_server import Malformed, Reply, Status
except ImportError:  # tests/ imported as a package
    from tests.provider_server import Malformed, Reply, Status

# Fake keys in the providers' shapes, assembled here so the repository never holds a key-shaped literal.
# Random tails, no words: any 6-character fragment of a key in use is masked in every later log line of the
# process, so a word in a test key would mask that word in other tests' logs.
OPENAI_KEY = "-".join(["sk", "qV7xK2rM9pL4wZ8tN3Jd"])
ANTHROPIC_KEY = "-".join(["sk", "ant", "bH5jD1gF6sY0cQ2uE9Rw"])
KEYS = {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY}
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
STOP_REASON = {"openai": ("stop", "length"), "anthropic": ("end_turn", "max_tokens")}
BOTH = pytest.mark.parametrize("provider", ["openai", "anthropic"])


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    for provider, key in KEYS.items():
        monkeypatch.setenv(KEY_ENV[provider], key)


def base_url(server, provider: str) -> str:
    return server.openai_base_url if provider == "openai" else server.anthropic_base_url


def engine_config(server, provider: str, tmp_path: Path, *, cache: bool = False, **overrides) -> dict:
    cfg = dict(provider=provider, model=MODELS[provider], base_url=base_url(server, provider), timeout=5.0,
               max_retries=2, backoff_base=0.01, backoff_max=2.0,
               cache={"enabled": cache, "path": str(tmp_path / "cache.sqlite")})
    cfg.update(overrides)
    return cfg


def make_engine(server, provider: str, tmp_path: Path, *, ledger=None, call_log=None, cache=False, **overrides):
    return build_engine(engine_config(server, provider, tmp_path, cache=cache, **overrides),
                        ledger=ledger, call_log=call_log)


def run(coro):
    return asyncio.run(coro)


def wait_idle(server, timeout: float = 3.0) -> None:
    """Wait until no request is still being handled (e.g. one a client gave up on)."""
    deadline = time.monotonic() + timeout
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.in_flight == 0


def last_user(request: dict) -> str:
    return request["json"]["messages"][-1]["content"]


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- 1. normal replies


@BOTH
def test_reply_usage_cost_and_request_body(server, tmp_path, provider):
    server.script(Reply("hello back", input_tokens=1000, output_tokens=200, cached_tokens=400))
    ledger = Ledger()
    log = JsonlLog(tmp_path / "calls.jsonl")
    engine = make_engine(server, provider, tmp_path, ledger=ledger, call_log=log)
    req = LLMRequest.chat("hi there", system="be brief", temperature=0.7, max_tokens=64, stop=("END",), tag="op:x")
    reply = run(engine.acomplete(req))

    assert reply.text == "hello back"
    assert reply.provider == provider and reply.model == MODELS[provider]  # the server echoes the requested model
    assert reply.usage == Usage(input_tokens=1000, output_tokens=200, cached_tokens=400)
    assert reply.finish_reason == STOP_REASON[provider][0]
    assert reply.latency_s > 0 and not reply.cache_hit
    price = ledger.prices.prices[MODELS[provider]]
    expected = (600 * price.input + 400 * price.cached_input + 200 * price.output) / 1e6
    assert reply.cost_usd == pytest.approx(expected) and reply.cost_usd > 0

    (sent,) = server.requests
    assert sent["provider"] == provider
    assert sent["headers"]["authorization"] == f"Bearer {KEYS[provider]}"
    assert sent["headers"]["x-stainless-retry-count"] == "0"  # the SDK's own retries are off; ours are used
    body = sent["json"]
    assert body["model"] == MODELS[provider] and body["max_tokens"] == 64 and body["temperature"] == 0.7
    if provider == "openai":
        assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
        assert body["stop"] == ["END"]
    else:
        assert body["system"] == "be brief" and body["messages"] == [{"role": "user", "content": "hi there"}]
        assert body["stop_sequences"] == ["END"]

    total = ledger.total()
    assert (total.calls, total.cache_hits, total.errors) == (1, 0, 0)
    assert (total.input_tokens, total.output_tokens, total.cached_tokens) == (1000, 200, 400)
    assert total.cost_usd == pytest.approx(expected)
    (rec,) = log_lines(tmp_path / "calls.jsonl")
    assert rec["kind"] == "llm_call" and rec["provider"] == provider and rec["tag"] == "op:x"
    assert rec["reply"] == "hello back" and rec["error"] is None and rec["cost_usd"] == pytest.approx(expected)


@BOTH
def test_truncated_reply_reports_length_finish_reason(server, tmp_path, provider):
    server.script(Reply("partial", truncated=True))
    reply = make_engine(server, provider, tmp_path).complete(LLMRequest.chat("long please"))
    assert reply.text == "partial" and reply.finish_reason == STOP_REASON[provider][1]


def test_price_table_matches_dated_model_snapshots():
    """Providers answer with dated snapshot names (gpt-4o-mini-2024-07-18, claude-haiku-4-5-20251001)."""
    prices = PriceTable()
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert prices.cost("openai", "gpt-4o-mini-2024-07-18", usage) == pytest.approx(0.15 + 0.60)
    assert prices.cost("anthropic", "claude-haiku-4-5-20251001", usage) == pytest.approx(1.00 + 5.00)
    assert prices.cost("openai", "gpt-4o-2024-08-06", usage) == pytest.approx(2.50 + 10.00)
    assert prices.cost("anthropic", "claude-3-5-haiku-20241022", usage) == pytest.approx(0.80 + 4.00)  # -> ...-latest
    assert not prices.unpriced
    assert prices.cost("openai", "no-such-model", usage) == 0.0 and prices.unpriced == {"no-such-model"}


# --------------------------------------------------------------------------- 2-5. retries, errors, timeouts


@BOTH
def test_429_retry_after_is_honoured_then_success(server, tmp_path, provider):
    server.script(Status(429, retry_after=0.3, message="slow down"), Reply("ok"))
    ledger = Ledger()
    engine = make_engine(server, provider, tmp_path, ledger=ledger, max_retries=3, backoff_base=0.01)
    reply = run(engine.acomplete(LLMRequest.chat("hi")))
    assert reply.text == "ok"
    first, second = server.requests  # exactly one retry
    assert second["t"] - first["t"] >= 0.3
    assert second["json"] == first["json"]
    assert ledger.total().calls == 1 and ledger.total().errors == 0


@BOTH
@pytest.mark.parametrize("retry_after", ["Wed, 21 Oct 2015 07:28:00 GMT", "soon", "Wed, 21 Oct 2015 07:28:00"])
def test_unusual_retry_after_headers_still_retry(server, tmp_path, provider, retry_after):
    """An HTTP-date (here in the past) or an unparsable value must not turn a 429 into a crash."""
    server.script(Status(429, retry_after=retry_after), Reply("ok"))
    reply = run(make_engine(server, provider, tmp_path).acomplete(LLMRequest.chat("hi")))
    assert reply.text == "ok" and len(server.requests) == 2


@BOTH
def test_500_until_retries_run_out(server, tmp_path, provider):
    server.default = Status(500, message="the upstream is on fire")
    ledger = Ledger()
    log = JsonlLog(tmp_path / "calls.jsonl")
    engine = make_engine(server, provider, tmp_path, ledger=ledger, call_log=log, max_retries=2)
    with pytest.raises(ProviderError) as info:
        run(engine.acomplete(LLMRequest.chat("hi")))
    err = info.value
    assert type(err) is ProviderError
    assert err.status == 500 and err.attempts == 3 and err.provider == provider
    assert "500" in str(err) and "the upstream is on fire" in str(err) and "3 attempt" in str(err)
    assert len(server.requests) == 3
    assert ledger.total().errors == 1 and ledger.total().calls == 0
    (rec,) = log_lines(tmp_path / "calls.jsonl")
    assert rec["reply"] is None and "the upstream is on fire" in rec["error"]


@BOTH
def test_client_error_is_not_retried(server, tmp_path, provider):
    server.script(Status(400, message="max_tokens is too large"))
    engine = make_engine(server, provider, tmp_path, max_retries=4)
    with pytest.raises(ProviderError) as info:
        run(engine.acomplete(LLMRequest.chat("hi")))
    assert info.value.status == 400 and info.value.attempts == 1 and "max_tokens is too large" in str(info.value)
    assert len(server.requests) == 1


@BOTH
def test_connection_refused_is_retried_then_reported(tmp_path, provider):
    import socket
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}" + ("/v1" if provider == "openai" else "")
    engine = build_engine(dict(provider=provider, model=MODELS[provider], base_url=url, max_retries=1,
                               backoff_base=0.01, cache={"enabled": False}))
    with pytest.raises(ProviderError) as info:
        engine.complete(LLMRequest.chat("hi"))
    assert "connection error" in str(info.value).lower() and info.value.attempts == 2


@BOTH
def test_timeout(server, tmp_path, provider):
    server.script(Reply("too late", delay=2))
    engine = make_engine(server, provider, tmp_path, timeout=0.2, max_retries=0)
    start = time.monotonic()
    with pytest.raises(ProviderError) as info:
        run(engine.acomplete(LLMRequest.chat("hi")))
    assert time.monotonic() - start < 1.5
    assert "timed out" in str(info.value).lower() and info.value.attempts == 1 and info.value.status is None
    server.reset()  # cut the server's pending delay short
    wait_idle(server)


@BOTH
def test_malformed_body_is_retried_then_a_clear_error(server, tmp_path, provider):
    """A 200 with an unparseable body is a transient fault (proxies cut bodies short): retried, then reported."""
    server.default = Malformed("{not json")
    ledger = Ledger()
    engine = make_engine(server, provider, tmp_path, ledger=ledger, max_retries=3)
    with pytest.raises(MalformedReplyError) as info:
        run(engine.acomplete(LLMRequest.chat("hi")))
    assert "malformed" in str(info.value).lower() and info.value.attempts == 4 and info.value.provider == provider
    assert len(server.requests) == 4
    assert ledger.total().errors == 1
    assert ledger.faults() == {"retries": {"malformed": 3}, "failed_calls": {"malformed": 1}}


@BOTH
def test_malformed_body_then_a_good_reply_succeeds(server, tmp_path, provider):
    server.script(Malformed("{not json"), Reply("fine"))
    reply = run(make_engine(server, provider, tmp_path, max_retries=3).acomplete(LLMRequest.chat("hi")))
    assert reply.text == "fine" and len(server.requests) == 2


@BOTH
@pytest.mark.parametrize("body", ['{"unexpected": true}', '{"choices": []}', "[]", '"text"'])
def test_json_body_of_the_wrong_shape_is_malformed(server, tmp_path, provider, body):
    server.default = Malformed(body)
    with pytest.raises(MalformedReplyError) as info:
        run(make_engine(server, provider, tmp_path, max_retries=1).acomplete(LLMRequest.chat("hi")))
    assert "malformed" in str(info.value).lower() and info.value.attempts == 2
    assert len(server.requests) == 2


# --------------------------------------------------------------------------- 6. concurrency bound


@BOTH
def test_concurrency_is_bounded(server, tmp_path, provider):
    wait_idle(server)
    server.default = Reply(delay=0.05)
    engine = make_engine(server, provider, tmp_path, max_concurrency=4)

    async def main():
        return await asyncio.gather(*(engine.acomplete(LLMRequest.chat(f"q{i}")) for i in range(50)))

    replies = run(main())
    assert [r.text for r in replies] == [f"echo: q{i}" for i in range(50)]
    assert len(server.requests) == 50
    assert 1 < server.peak_in_flight <= 4


# --------------------------------------------------------------------------- 7-8. persistent cache


_SUBPROCESS = """
import json, sys
from textgrad_core.engines import LLMRequest, build_engine
engine = build_engine(json.loads(sys.argv[1]))
for prompt in sys.argv[2:]:
    reply = engine.complete(LLMRequest.chat(prompt))
    print(json.dumps({"cache_hit": reply.cache_hit, "text": reply.text}))
"""


@BOTH
def test_repeated_request_is_served_from_the_cache(server, tmp_path, provider):
    ledger = Ledger()
    cfg = engine_config(server, provider, tmp_path, cache=True)
    engine = build_engine(cfg, ledger=ledger)
    first = engine.complete(LLMRequest.chat("cache me"))
    second = engine.complete(LLMRequest.chat("cache me", tag="another label"))  # the tag is not part of the key
    assert len(server.requests) == 1
    assert not first.cache_hit and second.cache_hit
    assert second.text == first.text == "echo: cache me" and second.usage == first.usage
    total = ledger.total()
    assert (total.calls, total.cache_hits) == (2, 1)
    assert total.input_tokens == first.usage.input_tokens  # a hit is not billed twice
    assert total.cost_usd == pytest.approx(first.cost_usd)


def test_cache_is_shared_with_a_second_process(server, tmp_path):
    """Provider-independent, so run once (a fresh interpreter importing an SDK is the slow part)."""
    cfg = engine_config(server, "openai", tmp_path, cache=True)
    engine = build_engine(cfg)
    first = engine.complete(LLMRequest.chat("cache me"))
    assert not first.cache_hit and len(server.requests) == 1

    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENAI_API_KEY=OPENAI_KEY)
    proc = subprocess.run([sys.executable, "-c", _SUBPROCESS, json.dumps(cfg), "cache me", "from the child"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert lines == [{"cache_hit": True, "text": "echo: cache me"}, {"cache_hit": False, "text": "echo: from the child"}]
    # the child reached the provider only for its new request, and this process now reads the child's entry
    assert [last_user(r) for r in server.requests] == ["cache me", "from the child"]
    assert engine.complete(LLMRequest.chat("from the child")).cache_hit
    assert len(server.requests) == 2


@BOTH
def test_temperature_and_sample_index_are_distinct_cache_entries(server, tmp_path, provider):
    engine = make_engine(server, provider, tmp_path, cache=True)
    requests = [LLMRequest.chat("same", temperature=0.0), LLMRequest.chat("same", temperature=1.0),
                LLMRequest.chat("same", temperature=1.0, sample_index=1)]
    replies = [engine.complete(r) for r in requests]
    assert [r.cache_hit for r in replies] == [False, False, False]
    assert [req["json"]["temperature"] for req in server.requests] == [0.0, 1.0, 1.0]
    assert len(engine.cache) == 3
    assert all(engine.complete(r).cache_hit for r in requests)
    assert len(server.requests) == 3


def test_corrupt_cache_file_is_reported_and_left_untouched(server, tmp_path):
    path = tmp_path / "cache.sqlite"
    garbage = os.urandom(4096)
    path.write_bytes(garbage)
    with pytest.raises(CacheError) as info:
        make_engine(server, "openai", tmp_path, cache=True)
    assert str(path) in str(info.value)
    assert path.read_bytes() == garbage
    assert server.requests == []


# --------------------------------------------------------------------------- 9. budget


def test_budget_crossed_mid_batch(server, tmp_path):
    server.default = Reply(delay=0.05)
    ledger = Ledger(budget=BudgetConfig(max_calls=5))
    log_path = tmp_path / "calls.jsonl"
    engine = make_engine(server, "openai", tmp_path, ledger=ledger, call_log=JsonlLog(log_path), cache=True,
                         max_concurrency=8)

    async def main():
        return await asyncio.gather(*(engine.acomplete(LLMRequest.chat(f"task {i}")) for i in range(20)),
                                    return_exceptions=True)

    results = run(main())
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, BudgetExceeded) for e in failed), failed
    assert failed and ok and len(ok) + len(failed) == 20
    assert len(server.requests) <= 5 and len(server.requests) == len(ok)
    assert "max_calls=5" in str(failed[0])

    records = log_lines(log_path)  # every line parses
    assert len([r for r in records if r["error"] is None and r["reply"] is not None]) == len(ok)
    assert ledger.total().calls == len(ok)

    # New calls are refused, but what is cached is still served.
    with pytest.raises(BudgetExceeded):
        engine.complete(LLMRequest.chat("one more"))
    assert engine.complete(LLMRequest.chat(ok[0].text.removeprefix("echo: "))).cache_hit
    assert len(server.requests) == len(ok)


# --------------------------------------------------------------------------- 10. secrets


@BOTH
def test_api_key_never_reaches_errors_or_call_log(server, tmp_path, provider):
    key = KEYS[provider]
    log_path = tmp_path / "calls.jsonl"
    engine = make_engine(server, provider, tmp_path, call_log=JsonlLog(log_path), max_retries=1)

    server.script(Status(401, message=f"Incorrect API key provided: {key}"))
    with pytest.raises(ProviderError) as info:
        run(engine.acomplete(LLMRequest.chat("hi")))
    assert server.requests[-1]["headers"]["authorization"] == f"Bearer {key}"  # the key was really sent
    assert info.value.status == 401 and info.value.attempts == 1
    assert key not in str(info.value) and key[-8:] not in str(info.value)
    assert "Incorrect API key provided: [REDACTED]" in str(info.value)
    assert key not in "".join(traceback.format_exception(info.value))  # nor in a printed traceback

    server.script(Status(503, message=f"proxy rejected {key}"), Status(503, message=f"proxy rejected {key}"))
    with pytest.raises(ProviderError) as info:
        run(engine.acomplete(LLMRequest.chat("hi")))
    assert info.value.status == 503 and key not in str(info.value) and "proxy rejected [REDACTED]" in str(info.value)

    server.script(Reply(f"your key is {key}"))
    run(engine.acomplete(LLMRequest.chat(f"please remember {key}")))

    text = log_path.read_text(encoding="utf-8")
    assert len(text.splitlines()) == 3
    assert key not in text and key[-8:] not in text and "[REDACTED]" in text


def test_key_from_a_custom_variable_is_redacted_whatever_its_shape(monkeypatch, server, tmp_path):
    """A key in a variable whose name does not look secret, and that does not look like sk-..., is still masked."""
    key = "zx-7f3a9c2e41-Qw8r"
    monkeypatch.setenv("VLLM_AUTH", key)
    log_path = tmp_path / "calls.jsonl"
    engine = make_engine(server, "openai", tmp_path, api_key_env="VLLM_AUTH", call_log=JsonlLog(log_path))
    server.script(Status(403, message=f"credential {key} is not allowed"))
    with pytest.raises(ProviderError) as info:
        engine.complete(LLMRequest.chat("hi"))
    assert server.requests[-1]["headers"]["authorization"] == f"Bearer {key}"
    assert key not in str(info.value) and "credential [REDACTED] is not allowed" in str(info.value)
    assert key not in log_path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- 11. configuration errors


@BOTH
def test_missing_api_key(monkeypatch, tmp_path, provider):
    monkeypatch.delenv(KEY_ENV[provider])
    with pytest.raises(MissingAPIKeyError) as info:
        build_engine({"provider": provider, "model": MODELS[provider], "cache": {"enabled": False}})
    assert KEY_ENV[provider] in str(info.value) and "provider=sim" in str(info.value)
    assert isinstance(info.value, ConfigError)


@BOTH
def test_missing_custom_key_variable(monkeypatch, server, tmp_path, provider):
    """A key declared required must exist, even for an OpenAI-compatible base_url; Anthropic always needs one."""
    monkeypatch.delenv("MY_PROXY_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError) as info:
        make_engine(server, provider, tmp_path, api_key_env="MY_PROXY_KEY", api_key_required=True)
    assert "MY_PROXY_KEY" in str(info.value)
    if provider == "anthropic":
        with pytest.raises(MissingAPIKeyError):
            make_engine(server, provider, tmp_path, api_key_env="MY_PROXY_KEY")


def test_local_openai_compatible_server_needs_no_key(monkeypatch, server, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY")
    reply = make_engine(server, "openai", tmp_path).complete(LLMRequest.chat("hi"))
    assert reply.text == "echo: hi"
    assert server.requests[0]["headers"]["authorization"] == "Bearer not-needed"


def test_unknown_provider():
    with pytest.raises(ConfigError) as info:
        build_engine({"provider": "openia", "model": "x"})
    for name in ("openai", "anthropic", "sim", "scripted"):
        assert name in str(info.value)
    assert "openia" in str(info.value) and "pydantic" not in str(info.value)
    with pytest.raises(ConfigError, match=r"engines\.optimizer.*Known providers: openai"):
        EngineSet({"forward": {"provider": "scripted"}, "optimizer": {"provider": "antropic"}})


# --------------------------------------------------------------------------- 12. sync facade


@BOTH
def test_sync_facade_inside_a_running_event_loop(server, tmp_path, provider):
    engine = make_engine(server, provider, tmp_path)

    async def notebook_cell():
        asyncio.get_running_loop()  # a loop is running, as in Jupyter
        sync_reply = engine.complete(LLMRequest.chat("from sync"))
        async_reply = await engine.acomplete(LLMRequest.chat("from async"))
        return sync_reply, async_reply

    sync_reply, async_reply = run(notebook_cell())
    assert sync_reply.text == "echo: from sync" and async_reply.text == "echo: from async"
    assert engine.complete(LLMRequest.chat("no loop")).text == "echo: no loop"
    assert len(server.requests) == 3


# --------------------------------------------------------------------------- 13. engine set


def test_engine_set_accounts_per_role(server, tmp_path):
    log_path = tmp_path / "calls.jsonl"
    engines = EngineSet({"forward": engine_config(server, "openai", tmp_path),
                         "optimizer": engine_config(server, "anthropic", tmp_path)},
                        call_log=JsonlLog(log_path))
    assert engines.describe() == {"forward": "openai/gpt-4o-mini", "credit": "openai/gpt-4o-mini",
                                  "optimizer": "anthropic/claude-haiku-4-5", "judge": "openai/gpt-4o-mini",
                                  "eval": "openai/gpt-4o-mini"}
    assert engines["judge"].backend is engines["forward"].backend  # identical configs share one client
    assert not engines.simulated

    async def main():
        await asyncio.gather(engines["forward"].acomplete(LLMRequest.chat("f1")),
                             engines["forward"].acomplete(LLMRequest.chat("f2")),
                             engines["optimizer"].acomplete(LLMRequest.chat("o1")),
                             engines["judge"].acomplete(LLMRequest.chat("j1")))

    run(main())
    by_role = engines.ledger.by_role()
    assert {role: t.calls for role, t in by_role.items()} == {"forward": 2, "optimizer": 1, "judge": 1}
    assert by_role["optimizer"].cost_usd > 0 and by_role["forward"].cost_usd > 0
    assert sorted(r["provider"] for r in server.requests) == ["anthropic", "openai", "openai", "openai"]
    rows = {(r["role"], r["provider"], r["model"]) for r in engines.ledger.rows()}
    assert rows == {("forward", "openai", "gpt-4o-mini"), ("judge", "openai", "gpt-4o-mini"),
                    ("optimizer", "anthropic", "claude-haiku-4-5")}
    assert sorted(r["role"] for r in log_lines(log_path)) == ["forward", "forward", "judge", "optimizer"]


def test_roles_on_one_config_share_one_concurrency_bound(server, tmp_path):
    wait_idle(server)
    server.default = Reply(delay=0.02)
    engines = EngineSet({"forward": engine_config(server, "openai", tmp_path, max_concurrency=2)})

    async def main():
        await asyncio.gather(*(engines[role].acomplete(LLMRequest.chat(f"{role} {i}"))
                               for i in range(6) for role in ("forward", "judge", "eval")))

    run(main())
    assert len(server.requests) == 18 and server.peak_in_flight == 2
    assert {role: t.calls for role, t in engines.ledger.by_role().items()} == {"forward": 6, "judge": 6, "eval": 6}


# --------------------------------------------------------------------------- 14. structured output


SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}


def test_openai_json_schema_response_format(server, tmp_path):
    server.reply_fn = lambda body: json.dumps({"answer": 42, "model": body["model"]})
    engine = make_engine(server, "openai", tmp_path, cache=True)
    req = LLMRequest.chat("what is six times seven?", response_format=ResponseFormat(name="answer", json_schema=SCHEMA))
    reply = engine.complete(req)
    assert reply.parsed == {"answer": 42, "model": "gpt-4o-mini"}
    fmt = server.requests[0]["json"]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "answer" and fmt["json_schema"]["schema"] == SCHEMA
    cached = engine.complete(req)
    assert cached.cache_hit and cached.parsed == reply.parsed
    # a plain request is a different cache entry and has nothing parsed
    plain = engine.complete(LLMRequest.chat("what is six times seven?"))
    assert not plain.cache_hit and plain.parsed is None and len(server.requests) == 2


def test_openai_json_object_fallback_puts_schema_in_a_system_message(server, tmp_path):
    server.reply_fn = lambda body: '{"answer": 1}'
    engine = make_engine(server, "openai", tmp_path, options={"native_json_schema": False})
    reply = engine.complete(LLMRequest.chat("q", response_format=ResponseFormat(json_schema=SCHEMA)))
    body = server.requests[0]["json"]
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["role"] == "system" and json.dumps(SCHEMA) in body["messages"][0]["content"]
    assert reply.parsed == {"answer": 1}


def test_anthropic_json_reply_in_a_code_fence_is_parsed(server, tmp_path):
    server.reply_fn = lambda body: '```json\n{"answer": 42}\n```'
    engine = make_engine(server, "anthropic", tmp_path)
    reply = engine.complete(LLMRequest.chat("q", system="be exact", response_format=ResponseFormat(json_schema=SCHEMA)))
    assert reply.parsed == {"answer": 42}
    body = server.requests[0]["json"]
    assert body["system"].startswith("be exact") and json.dumps(SCHEMA) in body["system"]
    assert "response_format" not in body


# ---- identical requests in flight at once -------------------------------------------------------
@BOTH
def test_identical_concurrent_requests_reach_the_provider_once(server, provider, tmp_path):
    server.default = Reply(delay=0.2)
    log = JsonlLog(tmp_path / "calls.jsonl")
    engine = make_engine(server, provider, tmp_path, cache=True, call_log=log)
    request = LLMRequest.chat("same question", model=MODELS[provider])

    async def main():
        return await asyncio.gather(*(engine.acomplete(request) for _ in range(5)))

    replies = run(main())
    assert len(server.requests) == 1
    assert sorted(r.cache_hit for r in replies) == [False, True, True, True, True]
    records = log.read()
    paid = [r for r in records if not r["cache_hit"]]
    assert len(paid) == 1 and all(r["cost_usd"] == 0.0 for r in records if r["cache_hit"])
    total = engine.ledger.total()
    assert (total.calls, total.cache_hits) == (5, 4)
