"""The request cache key covers everything that changes a reply (endpoint, backend options, simulator seed), and
the cache modes readwrite / replay / off. Real openai and anthropic SDK clients against local provider servers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textgrad_core.engines import JsonlLog, LLMRequest, build_engine
from textgrad_core.engines.sim import RubricItem, SimWorld
from textgrad_core.errors import ConfigError, ProviderError, ReplayMissError, TextgradError

try:
    from provider_server import ProviderServer, Reply
except ImportError:  # tests/ imported as a package
    from tests.provider_server import ProviderServer, Reply

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
BOTH = pytest.mark.parametrize("provider", ["openai", "anthropic"])


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "-".join(["sk", "Hq4Tz8Wn2Kd6Jv"]))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "-".join(["sk", "ant", "Rv3Lm7Xc1Pb5Gz"]))


@pytest.fixture
def second_server():
    srv = ProviderServer().start()
    srv.reply_fn = lambda body: "from the SECOND server"
    try:
        yield srv
    finally:
        srv.stop()


def url(server, provider: str) -> str:
    return server.openai_base_url if provider == "openai" else server.anthropic_base_url


def config(server, provider: str, cache_path: Path, **overrides) -> dict:
    cfg = dict(provider=provider, model=MODELS[provider], base_url=url(server, provider), timeout=5.0, max_retries=0,
               cache={"path": str(cache_path), **overrides.pop("cache", {})})
    cfg.update(overrides)
    return cfg


# --------------------------------------------------------------------------- the key


@BOTH
def test_two_endpoints_sharing_one_cache_file_never_serve_each_other(server, second_server, tmp_path, provider):
    cache = tmp_path / "shared.sqlite"
    server.reply_fn = lambda body: "from the FIRST server"
    first = build_engine(config(server, provider, cache))
    second = build_engine(config(second_server, provider, cache))
    prompts = [f"question {i}" for i in range(3)]
    assert [first.complete(LLMRequest.chat(p)).text for p in prompts] == ["from the FIRST server"] * 3
    replies = [second.complete(LLMRequest.chat(p)) for p in prompts]
    assert [r.text for r in replies] == ["from the SECOND server"] * 3 and not any(r.cache_hit for r in replies)
    assert len(second_server.requests) == 3
    # each endpoint is served its own replies from the cache afterwards
    assert all(first.complete(LLMRequest.chat(p)).cache_hit for p in prompts)
    assert [second.complete(LLMRequest.chat(p)).text for p in prompts] == ["from the SECOND server"] * 3
    assert len(server.requests) == 3 and len(second_server.requests) == 3


def test_trailing_slash_and_host_case_are_the_same_endpoint(server, tmp_path):
    cache = tmp_path / "c.sqlite"
    plain = build_engine(config(server, "openai", cache))
    slashed = build_engine(config(server, "openai", cache, base_url=server.openai_base_url.upper()
                                  .replace("/V1", "/v1") + "/"))
    assert plain.cache_key(LLMRequest.chat("q")) == slashed.cache_key(LLMRequest.chat("q"))
    plain.complete(LLMRequest.chat("q"))
    assert slashed.complete(LLMRequest.chat("q")).cache_hit and len(server.requests) == 1


def test_options_and_extra_headers_are_part_of_the_key(server, tmp_path):
    cache = tmp_path / "c.sqlite"
    base = build_engine(config(server, "openai", cache))
    headed = build_engine(config(server, "openai", cache, options={"headers": {"X-Tenant": "b"}}))
    other_option = build_engine(config(server, "openai", cache, options={"native_json_schema": False}))
    request = LLMRequest.chat("q")
    keys = {base.cache_key(request), headed.cache_key(request), other_option.cache_key(request)}
    assert len(keys) == 3
    base.complete(request)
    assert not headed.complete(request).cache_hit
    assert server.requests[-1]["headers"]["x-tenant"] == "b"


def test_every_sampling_field_changes_the_key_and_bookkeeping_does_not():
    base = LLMRequest.chat("q", system="s")
    variants = [base.model_copy(update=u) for u in ({"temperature": 0.5}, {"max_tokens": 7}, {"stop": ("X",)},
                                                     {"sample_index": 2}, {"messages": base.messages[1:]})]
    variants.append(LLMRequest.chat("q", system="s", response_format={"type": "json_object"}))
    keys = {r.cache_key("openai", "m", {"endpoint": "e"}) for r in [base, *variants]}
    assert len(keys) == len(variants) + 1
    assert base.cache_key("openai", "m") != base.cache_key("openai", "m2") != base.cache_key("anthropic", "m")
    assert base.cache_key("openai", "m", {"endpoint": "a"}) != base.cache_key("openai", "m", {"endpoint": "b"})
    assert base.model_copy(update={"tag": "other"}).cache_key("openai", "m") == base.cache_key("openai", "m")


WORLD = SimWorld(task="t", rubric=[RubricItem(key="k", guidance="Count carefully.", keywords=["carefully"],
                                              hint="count carefully")],
                 answers={"How many apples are there in two baskets of three?": "6"})


def sim_engine(tmp_path, **options):
    return build_engine({"provider": "sim", "model": "sim-1", "options": options,
                         "cache": {"enabled": True, "path": str(tmp_path / "sim.sqlite")}}, sim_world=WORLD)


def test_simulator_seeds_are_distinct_cache_entries(tmp_path):
    question = "Q: How many apples are there in two baskets of three?"
    requests = [LLMRequest.chat(f"{question} ({i})", tag="forward:answer") for i in range(12)]
    seed0 = [sim_engine(tmp_path, seed=0).complete(r) for r in requests]
    seed7 = [sim_engine(tmp_path, seed=7).complete(r) for r in requests]
    assert not any(r.cache_hit for r in seed0) and not any(r.cache_hit for r in seed7)
    fresh7 = build_engine({"provider": "sim", "model": "sim-1", "options": {"seed": 7}, "cache": {"enabled": False}},
                          sim_world=WORLD)
    assert [r.text for r in seed7] == [fresh7.complete(r).text for r in requests]  # seed 7's own replies
    assert [r.text for r in seed0] != [r.text for r in seed7]
    # the same seed is served from the cache; latency is not part of the key, the malformed rate is
    assert all(sim_engine(tmp_path, seed=7, latency_s=0.0).complete(r).cache_hit for r in requests)
    assert not sim_engine(tmp_path, seed=7, malformed_rate=0.5).complete(requests[0]).cache_hit


def test_simulator_world_is_part_of_the_key(tmp_path):
    other = WORLD.model_copy(update={"base_accuracy": 0.9})
    a = sim_engine(tmp_path, seed=0)
    b = build_engine({"provider": "sim", "model": "sim-1", "options": {"seed": 0},
                      "cache": {"enabled": True, "path": str(tmp_path / "sim.sqlite")}}, sim_world=other)
    request = LLMRequest.chat("Q: How many apples are there in two baskets of three?", tag="forward:x")
    assert a.cache_key(request) != b.cache_key(request)


# --------------------------------------------------------------------------- modes


@BOTH
def test_replay_serves_the_recording_with_no_provider_call(server, tmp_path, provider, monkeypatch):
    cache = tmp_path / "rec.sqlite"
    recorder = build_engine(config(server, provider, cache))
    prompts = [f"step {i}" for i in range(4)]
    recorded = [recorder.complete(LLMRequest.chat(p, tag="forward:op")).text for p in prompts]
    server.reset()
    monkeypatch.delenv("OPENAI_API_KEY")  # a shared recording replays offline, without any key
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    log = JsonlLog(tmp_path / "calls.jsonl")
    replayer = build_engine(config(server, provider, cache, cache={"mode": "replay"}), call_log=log)
    replies = [replayer.complete(LLMRequest.chat(p, tag="forward:op")) for p in prompts]
    assert [r.text for r in replies] == recorded and all(r.cache_hit for r in replies)
    assert server.requests == []
    assert len(log.read()) == 4


@BOTH
def test_replay_miss_is_a_clear_error_and_never_a_call(server, tmp_path, provider):
    cache = tmp_path / "rec.sqlite"
    build_engine(config(server, provider, cache)).complete(LLMRequest.chat("the recorded prompt"))
    server.reset()
    events = JsonlLog(tmp_path / "events.jsonl")
    replayer = build_engine(config(server, provider, cache, cache={"mode": "replay"}), events=events)
    changed = LLMRequest.chat("the changed\nprompt, which is long " + "x" * 200, system="sys", tag="credit:edge")
    with pytest.raises(ReplayMissError) as info:
        replayer.complete(changed)
    message = str(info.value)
    assert not isinstance(info.value, ProviderError) and isinstance(info.value, TextgradError)
    assert "\n" not in message
    for part in ("role=forward", "tag='credit:edge'", f"model={MODELS[provider]}", "'the changed prompt, which is long",
                 "engine.cache.mode=readwrite"):
        assert part in message, part
    assert server.requests == []
    (event,) = events.read()
    assert event["kind"] == "replay_miss" and event["tag"] == "credit:edge"


def test_replay_without_a_recording_is_a_config_error(server, tmp_path):
    missing = tmp_path / "nothing-here.sqlite"
    with pytest.raises(ConfigError, match="mode=readwrite"):
        build_engine(config(server, "openai", missing, cache={"mode": "replay"}))
    assert not missing.exists()


def test_off_and_disabled_never_touch_a_cache(server, tmp_path):
    for cache in ({"mode": "off"}, {"enabled": False}, {"enabled": False, "mode": "replay"}):
        path = tmp_path / f"{json.dumps(cache, sort_keys=True).replace(' ', '')}.sqlite"
        engine = build_engine(config(server, "openai", path, cache=cache))
        assert engine.cache is None and engine.cache_mode == "off"
        assert not engine.complete(LLMRequest.chat("q")).cache_hit
        assert not engine.complete(LLMRequest.chat("q")).cache_hit
        assert not path.exists()
    assert len(server.requests) == 6


def test_unknown_cache_mode_is_one_config_error():
    with pytest.raises(ConfigError, match="mode"):
        build_engine({"provider": "sim", "model": "sim-1", "cache": {"mode": "replay-only"}})
