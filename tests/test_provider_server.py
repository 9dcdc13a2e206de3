"""The fake provider server works with the real openai / anthropic SDK clients."""

import json
import threading

import anthropic
import openai
import pytest

try:
    from provider_server import Drop, FaultMix, Malformed, Reply, Status, Truncated
except ImportError:  # tests/ imported as a package
    from tests.provider_server import Drop, FaultMix, Malformed, Reply, Status, Truncated

USER = [{"role": "user", "content": "hello there"}]


def oai(server, **kw):
    return openai.OpenAI(api_key="test-key", base_url=server.openai_base_url, max_retries=kw.pop("max_retries", 0), **kw)


def ant(server, **kw):
    return anthropic.Anthropic(
        api_key="test-key", base_url=server.anthropic_base_url, max_retries=kw.pop("max_retries", 0), **kw
    )


def call_oai(client, **kw):
    return client.chat.completions.create(model="gpt-test", messages=USER, **kw)


def call_ant(client, **kw):
    return client.messages.create(model="claude-test", max_tokens=64, messages=USER, **kw)


# --------------------------------------------------------------------------- normal replies


def test_openai_reply_and_usage(server):
    server.script(Reply(input_tokens=20, output_tokens=5, cached_tokens=8))
    client = oai(server)
    r = call_oai(
        client,
        temperature=0.0,
        stop=["STOP"],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    )
    assert r.choices[0].message.content == "echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-test" and r.object == "chat.completion" and r.id and r.created
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (20, 5, 25)
    assert r.usage.prompt_tokens_details.cached_tokens == 8

    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == "Bearer test-key"
    assert req["headers"]["x-stainless-retry-count"] == "0"
    body = req["json"]
    assert body["model"] == "gpt-test" and body["messages"] == USER
    assert body["temperature"] == 0.0 and body["stop"] == ["STOP"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}


def test_anthropic_reply_and_usage(server):
    server.script(Reply("fixed", input_tokens=20, output_tokens=5, cached_tokens=8, truncated=True))
    client = ant(server)
    m = call_ant(client, system="be terse", stop_sequences=["END"], extra_body={"temperature": 0.0})
    assert m.content[0].type == "text" and m.content[0].text == "fixed"
    assert m.type == "message" and m.role == "assistant" and m.model == "claude-test" and m.id
    assert m.stop_reason == "max_tokens" and m.stop_sequence is None
    assert (m.usage.input_tokens, m.usage.output_tokens) == (12, 5)  # input excludes cache reads
    assert m.usage.cache_read_input_tokens == 8 and m.usage.cache_creation_input_tokens == 0

    (req,) = server.requests
    assert req["path"] == "/v1/messages"
    # anthropic 2.12.0 sends the api key as a Bearer token, not x-api-key
    assert req["headers"]["authorization"] == "Bearer test-key"
    assert "x-api-key" not in req["headers"]
    assert req["headers"]["anthropic-version"]
    body = req["json"]
    assert body["system"] == "be terse" and body["stop_sequences"] == ["END"]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 64 and body["messages"] == USER


def test_reply_fn_and_script_order(server):
    server.reply_fn = lambda body: f"{body['model']}:{len(body['messages'])}"
    server.script(Reply("first"))
    client = oai(server)
    assert call_oai(client).choices[0].message.content == "first"
    assert call_oai(client).choices[0].message.content == "gpt-test:1"
    assert call_ant(ant(server)).content[0].text == "claude-test:1"
    assert len(server.requests) == 3


# --------------------------------------------------------------------------- errors


def test_openai_rate_limit_with_retry_after(server):
    server.script(Status(429, retry_after=1))
    with pytest.raises(openai.RateLimitError) as ei:
        call_oai(oai(server))
    err = ei.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "1"
    assert err.body["message"] == "simulated provider error"  # openai unwraps body["error"]
    assert err.code == "rate_limit_exceeded"


def test_anthropic_rate_limit_with_retry_after(server):
    server.script(Status(429, retry_after=1))
    with pytest.raises(anthropic.RateLimitError) as ei:
        call_ant(ant(server))
    err = ei.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "1"
    assert err.type == "rate_limit_error" and err.api_message == "simulated provider error"


def test_internal_server_error_as_default(server):
    server.default = Status(500)
    with pytest.raises(openai.InternalServerError):
        call_oai(oai(server))
    with pytest.raises(anthropic.InternalServerError):
        call_ant(ant(server))
    with pytest.raises(openai.InternalServerError):
        call_oai(oai(server))
    assert len(server.requests) == 3


def test_malformed_body_raises_json_decode_error(server):
    # Neither SDK wraps this: a 200 with Content-Type json but a broken body
    # surfaces as json.JSONDecodeError (a ValueError) from response.json().
    server.script(Malformed(), Malformed())
    with pytest.raises(json.JSONDecodeError):
        call_oai(oai(server))
    with pytest.raises(json.JSONDecodeError):
        call_ant(ant(server))


def test_timeouts(server):
    server.default = Reply(delay=2.0)
    with pytest.raises(openai.APITimeoutError):
        call_oai(oai(server, timeout=0.3))
    with pytest.raises(anthropic.APITimeoutError):
        call_ant(ant(server, timeout=0.3))
    assert len(server.requests) == 2


def test_sdk_retries_honour_retry_after(server):
    server.script(Status(429, retry_after=0.05), Reply("ok"), Status(529, retry_after=0.05), Reply("ok2"))
    assert call_oai(oai(server, max_retries=1)).choices[0].message.content == "ok"
    assert call_ant(ant(server, max_retries=1)).content[0].text == "ok2"
    assert [r["headers"]["x-stainless-retry-count"] for r in server.requests] == ["0", "1", "0", "1"]


def test_unknown_route_is_404(server):
    client = oai(server)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="e", input="x")


# --------------------------------------------------------------------------- concurrency


def test_peak_in_flight_with_threads(server):
    server.default = Reply(delay=0.2)
    oc, ac = oai(server), ant(server)
    results, errors = [], []

    def work(i):
        try:
            if i % 2:
                results.append(call_oai(oc).choices[0].message.content)
            else:
                results.append(call_ant(ac).content[0].text)
        except Exception as e:  # pragma: no cover - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors
    assert results == ["echo: hello there"] * 10
    assert len(server.requests) == 10
    assert server.peak_in_flight > 1


def test_reset_clears_state(server):
    server.script(Reply("x"))
    call_oai(oai(server))
    server.script(Status(500))
    server.reset()
    assert server.requests == [] and server.peak_in_flight == 0
    assert call_oai(oai(server)).choices[0].message.content == "echo: hello there"


# --------------------------------------------------------------------------- faults and records


def test_truncated_body_and_dropped_connection_reach_the_sdks(server):
    server.script(Truncated(), Truncated(), Drop(), Drop())
    with pytest.raises(json.JSONDecodeError):
        call_oai(oai(server))
    with pytest.raises(json.JSONDecodeError):
        call_ant(ant(server))
    with pytest.raises(openai.APIConnectionError):
        call_oai(oai(server))
    with pytest.raises(anthropic.APIConnectionError):
        call_ant(ant(server))
    assert [r["outcome"] for r in server.requests] == ["truncated", "truncated", "drop", "drop"]
    assert call_oai(oai(server)).choices[0].message.content == "echo: hello there"  # the server is still up


def test_every_request_and_what_it_got_is_recorded(server):
    server.script(Status(503), Reply(""), Malformed(), Reply("ok"))
    client = oai(server)
    with pytest.raises(openai.InternalServerError):
        call_oai(client)
    assert call_oai(client).choices[0].message.content == ""
    with pytest.raises(json.JSONDecodeError):
        call_oai(client)
    call_oai(client)
    assert [(r["n"], r["outcome"], r["status"]) for r in server.requests] == [
        (0, "status", 503), (1, "empty", 200), (2, "malformed", 200), (3, "reply", 200)]
    assert [r["reply"] for r in server.answered()] == ["ok"]
    assert server.outcomes() == {"status": 1, "empty": 1, "malformed": 1, "reply": 1}


def _outcomes_for(server, mix, n):
    server.reset()  # also clears the fault mix
    server.faults = mix
    client = oai(server)
    for i in range(n):
        try:
            call_oai(client, extra_body={"user": f"u{i}"})
        except (openai.APIError, json.JSONDecodeError):
            pass
    return [r["outcome"] for r in server.requests]


def test_fault_mix_rates_are_seeded_and_reproducible(server):
    mix = FaultMix(rate_429=0.2, rate_500=0.1, rate_drop=0.1, rate_truncated=0.1, rate_empty=0.1, seed=3)
    try:
        first = _outcomes_for(server, mix, 60)
        assert first == _outcomes_for(server, mix, 60)  # the same requests meet the same faults
        other = _outcomes_for(server, FaultMix(rate_429=0.2, rate_500=0.1, rate_drop=0.1, rate_truncated=0.1,
                                               rate_empty=0.1, seed=4), 60)
    finally:
        server.faults = None
    assert other != first
    counts = {k: first.count(k) for k in set(first)}
    assert set(counts) == {"reply", "status", "drop", "truncated", "empty"}
    assert 15 <= counts["reply"] <= 45  # about 40% at these rates
    statuses = {r["status"] for r in server.requests if r["outcome"] == "status"}
    assert statuses <= {429, 500}


def test_a_retried_request_gets_a_fresh_draw(server):
    server.faults = FaultMix(rate_500=0.5, seed=0)
    try:
        client = oai(server, max_retries=8)
        for i in range(5):  # with fresh draws each retry, every call gets through eventually
            assert call_oai(client, extra_body={"user": f"u{i}"}).choices[0].message.content == "echo: hello there"
    finally:
        server.faults = None
    assert len(server.answered()) == 5 and len(server.requests) > 5


def test_fault_mix_rejects_impossible_rates():
    with pytest.raises(ValueError):
        FaultMix(rate_429=0.7, rate_500=0.5)
    with pytest.raises(ValueError):
        FaultMix(rate_drop=-0.1)
