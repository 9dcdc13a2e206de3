"""Secrets are masked wherever any 6+ character part of them appears; HTTP client logging never reaches the
console; the local OpenAI-compatible engine config runs with no key set."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textgrad_core import runlog
from textgrad_core.engines import JsonlLog, LLMRequest, build_engine, route_http_logs, unroute_http_logs
from textgrad_core.engines.http_logging import HTTP_LOGGERS
from textgrad_core.errors import MissingAPIKeyError, ProviderError
from textgrad_core.runlog import redact, register_secret

try:
    from provider_server import Reply, Status
except ImportError:  # tests/ imported as a package
    from tests.provider_server import Reply, Status

# Assembled at run time so that the repository holds no key-shaped literal.
SHAPES = {
    "openai": "-".join(["sk", "Tq3Vn8Lw1Zr5Kc7Hm2Xb9Pd4Fy6Gs0Ju"]),
    "anthropic": "-".join(["sk", "ant", "Wd6Nh2Qz8Rt4Vx1Lb7Mc3Kp9"]),
    "random40": "Yh4Jr8Nc2Wq6Zt1Lv5Kd9Bm3Xf7Gp0Sa2Ue6Ri4O",
    "short": "Qm7Zx2",
}


@pytest.fixture(scope="module", autouse=True)
def registered():
    for value in SHAPES.values():
        register_secret(value)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_any_six_character_fragment_of_a_secret_is_masked(shape):
    secret = SHAPES[shape]
    for start, end in [(0, len(secret)), (0, 6), (len(secret) - 6, len(secret)), (1, 7),
                       (len(secret) // 3, len(secret) // 3 + 6), (2, len(secret) - 1)]:
        fragment = secret[start:end]
        if len(fragment) < 6:
            continue
        masked = redact(f"prefix {fragment} suffix")
        assert masked == "prefix [REDACTED] suffix", (shape, fragment, masked)
        glued = redact(f"id={fragment}.")  # glued to other text, and inside JSON
        assert fragment not in glued and glued == "id=[REDACTED]."
    assert redact(secret[:5]) == secret[:5]  # five characters identify nothing and stay readable


def test_fragments_of_several_secrets_and_repeats_are_all_masked():
    a, b = SHAPES["random40"], SHAPES["openai"]
    text = f"{a[3:20]}{b[10:30]} and again {a[25:33]}, {b}"
    masked = redact(text)
    assert masked == "[REDACTED] and again [REDACTED], [REDACTED]"
    assert all(window not in masked for s in (a, b) for window in (s[i:i + 6] for i in range(len(s) - 5)))


def test_the_matcher_is_compiled_once_per_secret_set():
    matcher = runlog._matcher
    redact("x" * 1000)
    redact("another line")
    assert runlog._matcher is matcher
    register_secret(SHAPES["short"])  # already known: no rebuild
    assert runlog._matcher is matcher
    register_secret("Fz9Qs2Vk7Lw4")
    assert runlog._matcher is not matcher and redact("Qs2Vk7L") == "[REDACTED]"


def test_secret_looking_environment_values_are_masked_as_a_whole(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok.ABCDEFGH.1234")
    monkeypatch.setenv("PLAIN_SETTING", "visible-value-99")
    assert redact("t=tok.ABCDEFGH.1234 p=visible-value-99") == "t=[REDACTED] p=visible-value-99"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_key_fragment_never_reaches_the_call_log_or_errors(server, tmp_path, monkeypatch, provider):
    key = "Kx8Wp3Rn6Tz1Vb4Lq7Hd2Mj9"  # no provider shape, no secret-looking variable name
    monkeypatch.setenv("MY_GATEWAY_CRED", key)
    log_path = tmp_path / "calls.jsonl"
    engine = build_engine(dict(provider=provider, model="gpt-4o-mini" if provider == "openai" else "claude-haiku-4-5",
                               base_url=server.openai_base_url if provider == "openai" else server.anthropic_base_url,
                               api_key_env="MY_GATEWAY_CRED", max_retries=0, cache={"enabled": False}),
                          call_log=JsonlLog(log_path))
    server.script(Status(401, message=f"key prefix {key[:12]} rejected"), Reply(f"I saw ...{key[4:16]}..."))
    with pytest.raises(ProviderError) as info:
        engine.complete(LLMRequest.chat("hi"))
    assert key[:12] not in str(info.value) and "key prefix [REDACTED] rejected" in str(info.value)
    engine.complete(LLMRequest.chat(f"remember {key[-8:]}"))
    text = log_path.read_text(encoding="utf-8")
    assert all(key[i:i + 6] not in text for i in range(len(key) - 5)) and text.count("[REDACTED]") >= 3


# --------------------------------------------------------------------------- HTTP logging


@pytest.fixture
def console():
    """A root handler at INFO, as Hydra installs one; restored afterwards."""
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    old_level, old_handlers = root.level, list(root.handlers)
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate) for name in HTTP_LOGGERS}
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, (level, propagate) in saved.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate
        assert root.handlers == old_handlers


def test_http_client_lines_stay_off_the_console_and_can_go_to_a_run_log(server, tmp_path, console):
    monkey_key = "-".join(["sk", "Nv5Bq9Xc3Zw7Lf"])
    engine = build_engine(dict(provider="openai", model="gpt-4o-mini", base_url=server.openai_base_url,
                               cache={"enabled": False}, api_key_env="LOG_TEST_KEY", api_key_required=False))
    root_handlers = list(logging.getLogger().handlers)
    for i in range(3):
        engine.complete(LLMRequest.chat(f"q{i}"))
    assert "HTTP Request" not in console.getvalue() and console.getvalue() == ""
    assert logging.getLogger().handlers == root_handlers  # engines never configure the root logger

    run_log = tmp_path / "run.log"
    handler = logging.FileHandler(run_log)
    route_http_logs(handler)
    try:
        engine.complete(LLMRequest.chat("routed"))
    finally:
        unroute_http_logs(handler)
        handler.close()
    assert "HTTP Request: POST" in run_log.read_text() and console.getvalue() == ""
    assert monkey_key not in run_log.read_text()


# --------------------------------------------------------------------------- local OpenAI-compatible servers


def local_openai(server, **overrides):
    cfg = yaml.safe_load((ROOT / "configs/engine/local_openai.yaml").read_text())
    cfg.update(base_url=server.openai_base_url, cache={"enabled": False}, **overrides)
    return cfg


def test_local_openai_config_runs_with_no_key_set(server, monkeypatch):
    monkeypatch.delenv("LOCAL_LLM_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert build_engine(local_openai(server)).complete(LLMRequest.chat("hi")).text == "echo: hi"
    assert server.requests[-1]["headers"]["authorization"] == "Bearer not-needed"
    monkeypatch.setenv("LOCAL_LLM_API_KEY", "Gk4Hn8Jw2Lp6Vs")
    build_engine(local_openai(server)).complete(LLMRequest.chat("again"))
    assert server.requests[-1]["headers"]["authorization"] == "Bearer Gk4Hn8Jw2Lp6Vs"


def test_a_required_key_is_declared_explicitly(server, monkeypatch):
    monkeypatch.delenv("LOCAL_LLM_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="LOCAL_LLM_API_KEY"):
        build_engine(local_openai(server, api_key_required=True))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):  # the hosted API still needs its key
        build_engine({"provider": "openai", "model": "gpt-4o-mini", "cache": {"enabled": False}})
