"""Provider faults are retried and reported: malformed and empty 200 replies, dropped connections, 429/5xx;
every retry and failed call is an event, counted in the ledger; every answered call is in the call log, with its
call context and a request id. Real openai and anthropic SDK clients against the local fault server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textgrad_core.engines import (CALL_CONTEXT_FIELDS, EngineSet, JsonlLog, Ledger, LLMRequest, ResponseFormat,
                                   build_engine, call_context, current_call_context)
from textgrad_core.errors import EmptyReplyError, MalformedReplyError, ProviderError

try:
    from provider_server import Drop, FaultMix, Reply, Status, Truncated
except ImportError:  # tests/ imported as a package
    from tests.provider_server import Drop, FaultMix, Reply, Status, Truncated

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
BOTH = pytest.mark.parametrize("provider", ["openai", "anthropic"])


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "-".join(["sk", "Jw5Yc9Gm3Ve7Qd"]))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "-".join(["sk", "ant", "Ux2Np6Bs8Kf4Wm"]))


def make(server, provider, tmp_path, *, ledger=None, **overrides):
    cfg = dict(provider=provider, model=MODELS[provider],
               base_url=server.openai_base_url if provider == "openai" else server.anthropic_base_url,
               timeout=5.0, max_retries=3, backoff_base=0.001, backoff_max=0.05, cache={"enabled": False})
    cfg.update(overrides)
    calls, events = JsonlLog(tmp_path / "calls.jsonl"), JsonlLog(tmp_path / "events.jsonl")
    return build_engine(cfg, ledger=ledger or Ledger(), call_log=calls, events=events), calls, events


# --------------------------------------------------------------------------- each fault is retried


@BOTH
@pytest.mark.parametrize("fault, reason, status", [
    (Truncated(), "malformed", 200), (Reply(""), "empty", None), (Drop(), "connection", None),
    (Status(429, retry_after=0.01), "429", 429), (Status(503), "5xx", 503)])
def test_a_fault_is_retried_and_is_an_event(server, tmp_path, provider, fault, reason, status):
    server.script(fault, Reply("good"))
    engine, calls, events = make(server, provider, tmp_path)
    with call_context(run_id="r1", step=2, phase="forward", split="train", example_id="ex-9"):
        reply = engine.complete(LLMRequest.chat("hi", tag="forward:op"))
    assert reply.text == "good" and len(server.requests) == 2
    (event,) = events.read()
    assert {k: event[k] for k in ("kind", "reason", "status", "attempt", "role", "tag", "model")} == {
        "kind": "retry", "reason": reason, "status": status, "attempt": 1, "role": "forward", "tag": "forward:op",
        "model": MODELS[provider]}
    assert event["delay_s"] >= 0 and (event["run_id"], event["step"], event["example_id"]) == ("r1", 2, "ex-9")
    (record,) = calls.read()
    assert record["reply"] == "good" and record["attempts"] == 2 and record["request_id"] == event["request_id"]
    assert engine.ledger.faults() == {"retries": {reason: 1}, "failed_calls": {}}


@BOTH
def test_empty_reply_with_a_response_format_is_retried_too(server, tmp_path, provider):
    server.script(Reply(""), Reply('{"answer": 3}'))
    engine, _, _ = make(server, provider, tmp_path)
    reply = engine.complete(LLMRequest.chat("q", response_format=ResponseFormat(json_schema={"type": "object"})))
    assert reply.parsed == {"answer": 3} and len(server.requests) == 2


@BOTH
@pytest.mark.parametrize("fault, error_type, reason", [
    (Reply(""), EmptyReplyError, "empty"), (Truncated(), MalformedReplyError, "malformed"),
    (Drop(), ProviderError, "connection"), (Status(500), ProviderError, "5xx")])
def test_a_call_failing_after_its_retries_is_an_event_and_a_call_record(server, tmp_path, provider, fault,
                                                                         error_type, reason):
    server.default = fault
    engine, calls, events = make(server, provider, tmp_path, max_retries=2)
    with call_context(phase="credit"):
        with pytest.raises(error_type) as info:
            engine.complete(LLMRequest.chat("hi", tag="credit:edge"))
    assert info.value.attempts == 3 and len(server.requests) == 3
    kinds = [(e["kind"], e["reason"], e["attempt"]) for e in events.read()]
    assert kinds == [("retry", reason, 1), ("retry", reason, 2), ("call_failed", reason, 3)]
    failed = events.read()[-1]
    assert failed["error"] == str(info.value) and failed["phase"] == "credit" and failed["tag"] == "credit:edge"
    (record,) = calls.read()
    assert record["reply"] is None and record["error"] == str(info.value) and record["phase"] == "credit"
    assert engine.ledger.faults() == {"retries": {reason: 2}, "failed_calls": {reason: 1}}
    assert engine.ledger.by_phase()["credit"].errors == 1


def test_a_client_error_fails_at_once_as_4xx(server, tmp_path):
    server.script(Status(400, message="bad request"))
    engine, _, events = make(server, "openai", tmp_path)
    with pytest.raises(ProviderError):
        engine.complete(LLMRequest.chat("hi"))
    assert [(e["kind"], e["reason"], e["status"]) for e in events.read()] == [("call_failed", "4xx", 400)]


def test_empty_replies_can_be_accepted_when_configured(server, tmp_path):
    server.script(Reply(""))
    engine, _, events = make(server, "openai", tmp_path, retry_empty=False)
    assert engine.complete(LLMRequest.chat("hi")).text == "" and len(server.requests) == 1 and events.read() == []


# --------------------------------------------------------------------------- a fault mix under concurrency


@BOTH
def test_under_a_fault_mix_every_answered_call_is_in_the_call_log(server, tmp_path, provider):
    """The issue's mild mix (429, 500, drops, truncated bodies) plus empty replies, 80 concurrent calls."""
    server.faults = FaultMix(rate_429=0.05, rate_500=0.02, rate_drop=0.01, rate_truncated=0.05, rate_empty=0.03,
                             seed=11)
    server.reply_fn = lambda body: "answer to " + body["messages"][-1]["content"]
    ledger = Ledger()
    engine, calls, events = make(server, provider, tmp_path, ledger=ledger, max_retries=6, max_concurrency=8)

    async def one(i):
        with call_context(step=1, phase="forward", example_id=f"ex-{i}"):
            return await engine.acomplete(LLMRequest.chat(f"question {i}", tag="forward:op"))

    async def main():
        with call_context(run_id="run-x"):
            return await asyncio.gather(*(one(i) for i in range(80)))

    replies = asyncio.run(main())
    assert [r.text for r in replies] == [f"answer to question {i}" for i in range(80)]
    outcomes = server.outcomes()
    faults = sum(n for kind, n in outcomes.items() if kind != "reply")
    assert faults > 0 and outcomes["reply"] == 80  # the mix did hit, and each call got through once

    records = calls.read()
    logged = sorted(r["reply"] for r in records if r["reply"] is not None)
    assert logged == sorted(r["reply"] for r in server.answered())  # every answered call is in calls.jsonl
    assert len({r["request_id"] for r in records}) == 80
    assert {(r["run_id"], r["example_id"]) for r in records} == {("run-x", f"ex-{i}") for i in range(80)}
    assert all(r["messages"][-1]["content"] == f"question {r['example_id'][3:]}" for r in records)

    retries = [e for e in events.read() if e["kind"] == "retry"]
    assert len(retries) == faults  # every fault the server injected is a retry event
    assert sum(ledger.faults()["retries"].values()) == faults and ledger.faults()["failed_calls"] == {}
    by_reason = ledger.faults()["retries"]
    expected = {"status": by_reason.get("429", 0) + by_reason.get("5xx", 0),
                "drop": by_reason.get("connection", 0), "truncated": by_reason.get("malformed", 0),
                "empty": by_reason.get("empty", 0)}
    assert expected == {k: outcomes.get(k, 0) for k in expected}


# --------------------------------------------------------------------------- call context


def test_call_context_layers_and_is_inherited_by_tasks(tmp_path):
    log = JsonlLog(tmp_path / "calls.jsonl")
    engine = build_engine({"provider": "scripted", "model": "s", "cache": {"enabled": False}}, call_log=log)
    engine.backend.reply_fn = lambda r: "ok"

    async def main():
        with call_context(run_id="R", step=0, phase="validation", split="val"):
            async def example(i):
                with call_context(example_id=f"v{i}"):
                    await asyncio.sleep(0.001 * (3 - i))  # interleave the tasks
                    return await engine.acomplete(LLMRequest.chat(f"q{i}"))
            await asyncio.gather(*(asyncio.create_task(example(i)) for i in range(3)))
            assert current_call_context()["example_id"] is None  # the inner layers ended with their blocks
        await engine.acomplete(LLMRequest.chat("outside"))

    asyncio.run(main())
    records = {r["messages"][-1]["content"]: r for r in log.read()}
    for i in range(3):
        assert {k: records[f"q{i}"][k] for k in CALL_CONTEXT_FIELDS} == {
            "run_id": "R", "step": 0, "phase": "validation", "split": "val", "example_id": f"v{i}"}
    assert all(records["outside"][k] is None for k in CALL_CONTEXT_FIELDS)
    assert len({r["request_id"] for r in records.values()}) == 4
    assert engine.ledger.by_phase()["validation"].calls == 3


def test_call_context_rejects_unknown_fields():
    with pytest.raises(TypeError, match="exmaple_id"):
        with call_context(exmaple_id="x"):
            pass


def test_request_id_and_context_are_never_part_of_the_key():
    request = LLMRequest.chat("q")
    with call_context(run_id="a", step=1):
        inside = request.cache_key("openai", "m")
    assert inside == request.cache_key("openai", "m")


def test_engine_set_passes_events_to_every_role(server, tmp_path):
    server.script(Status(503), Reply("a"), Status(503), Reply("b"))
    events = JsonlLog(tmp_path / "events.jsonl")
    cfg = dict(provider="openai", model="gpt-4o-mini", base_url=server.openai_base_url, max_retries=2,
               backoff_base=0.001, cache={"enabled": False})
    engines = EngineSet({"forward": cfg, "optimizer": {**cfg, "max_concurrency": 3}}, events=events)
    engines["forward"].complete(LLMRequest.chat("f"))
    engines["optimizer"].complete(LLMRequest.chat("o"))
    assert [(e["kind"], e["role"]) for e in events.read()] == [("retry", "forward"), ("retry", "optimizer")]
    assert engines.ledger.faults()["retries"] == {"5xx": 2}
