"""Every parser of a model reply returns a value or a clear rejection (ParseError / None) under any input: deep
nesting, huge input, binary, empty, lone surrogates. Property-based (hypothesis), kept small so the file runs fast."""
from __future__ import annotations

import asyncio
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textgrad_core.credit import CreditResult, ParameterFeedback
from textgrad_core.engines import LLMReply, ScriptedBackend, build_engine
from textgrad_core.engines.base import parse_json_reply
from textgrad_core.errors import ParseError
from textgrad_core.optimizers import OPRO, TGD, JointUpdate
from textgrad_core.optimizers.base import extract_delimited
from textgrad_core.optimizers.joint import check_updates, decode_reply
from textgrad_core.optimizers.kinds import coerce_value
from textgrad_core.runlog import JsonlLog
from textgrad_core.validators import Compiles
from textgrad_core.variable import Parameter

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENGINE_RUNS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any text, lone surrogates included (hypothesis leaves them out of st.text() by default).
any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=300)
# Text made of the characters parsers care about, so delimiters and brackets actually occur.
structural = st.text(alphabet=st.sampled_from(list('[]{}()":,\\ \n`json<NEW_VALUE></NEW_VALUE>0123456789.-e\ud800')),
                     max_size=400)
json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)
HOSTILE = ["", " ", "\x00", "[" * 100000, "{" * 100000, '{"a":' * 50000, "1" * 5000, "```" + " " * 200000 + "x",
           "<NEW_VALUE>" * 1000, "\ud800", "\udfff<NEW_VALUE>\ud800</NEW_VALUE>", "x" * 5_000_000]


def params() -> list[Parameter]:
    return [Parameter(value="Answer briefly.", role="instruction", name="text"),
            Parameter(value=0.5, role="threshold", name="number", kind="number"),
            Parameter(value=3, role="threshold", name="count", kind="number"),
            Parameter(value="def f(x):\n    return x\n", role="solver", name="code", kind="code"),
            Parameter(value="a", role="model", name="choice", kind="choice", choices=["a", "b", 7]),
            Parameter(value=[], role="demos", name="demos", kind="demos", allowed_ids=["t1", "t2"])]


def accepted_or_rejected(param: Parameter, raw) -> None:
    """coerce_value either returns a value every validator accepts, or raises ParseError."""
    try:
        value = coerce_value(param, raw)
    except ParseError as exc:
        assert str(exc)  # a rejection says why
        return
    assert param.rejection(value) is None
    if isinstance(value, str):
        value.encode("utf-8")  # it can be written to the run log
    if isinstance(value, float):
        assert math.isfinite(value)


def engine_for(backend):
    return build_engine({"provider": "scripted", "model": "m", "cache": {"enabled": False}}, backend=backend)


# ---- the parsers alone -----------------------------------------------------------------------------------------
@FAST
@given(st.one_of(any_text, structural))
def test_extract_delimited_returns_text_or_a_parse_error(text):
    try:
        value = extract_delimited(text)
    except ParseError:
        return
    assert isinstance(value, str) and value.strip() and value in text


@FAST
@given(st.one_of(any_text, structural, json_values.map(lambda v: json.dumps(v))))
def test_parse_json_reply_never_raises(text):
    parse_json_reply(text)
    parse_json_reply("```json\n" + text + "\n```")


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:12]) + f"x{len(t)}")
def test_parsers_on_hostile_inputs(text):
    assert parse_json_reply(text) is None
    if "</NEW_VALUE>" in text:  # a well-delimited lone surrogate is extracted, then rejected by every kind
        assert extract_delimited(text) == "\ud800"
        for param in params():
            with pytest.raises(ParseError):
                coerce_value(param, extract_delimited(text))
    else:
        with pytest.raises(ParseError):
            extract_delimited(text)
    for param in params():
        accepted_or_rejected(param, text)


def test_parse_json_reply_rejects_non_text_and_depth():
    assert parse_json_reply(b'{"a": 1}') is None and parse_json_reply(None) is None
    assert parse_json_reply("[" * 100000 + "]" * 100000) is None
    assert parse_json_reply('```json\n{"a": 1}\n```') == {"a": 1}


@FAST
@given(st.sampled_from(range(6)), st.one_of(any_text, structural, json_values, st.floats(), st.binary(max_size=50)))
def test_coerce_value_accepts_valid_values_or_rejects_clearly(index, raw):
    accepted_or_rejected(params()[index], raw)


@FAST
@given(st.one_of(st.floats(), st.integers(), st.text(alphabet="0123456789.e-+naifINF ", max_size=60)))
def test_numbers_are_finite_or_rejected(raw):
    for param in params()[1:3]:
        accepted_or_rejected(param, raw)


@FAST
@given(st.one_of(any_text, structural, st.text(alphabet="()[]{}-+~ not.a1\n:", max_size=2000)))
def test_code_check_returns_a_reason_or_none(source):
    reason = Compiles("f").check(source, None)
    assert reason is None or isinstance(reason, str)


@FAST
@given(st.one_of(any_text, structural, json_values.map(json.dumps),
                 st.dictionaries(st.sampled_from(["text", "number", "code", "choice", "demos", "x"]), json_values,
                                 max_size=4).map(lambda u: json.dumps({"reasoning": "r", "updates": u}))))
def test_joint_decoding_and_checking_never_raise(text):
    values, errors = check_updates(decode_reply(LLMReply(text=text, model="m", provider="scripted")), params())
    assert values or errors or text  # something was decided
    by_id = {p.id: p for p in params()}
    for pid, value in values.items():
        assert by_id[pid].rejection(value) is None


# ---- the optimizers end to end: a hostile reply is re-asked, then the value is kept ------------------------------
def deep_json(depth: int) -> str:
    return '{"reasoning": "r", "updates": {"text": ' + "[" * depth + "]" * depth + "}}"


@pytest.mark.parametrize("reply", [deep_json(100000), "[" * 100000, '{"updates": ' * 40000, "\ud800" * 10])
def test_joint_deeply_nested_reply_is_reasked_then_kept_with_an_event(reply, tmp_path):
    backend = ScriptedBackend(replies=[reply, reply])
    ps = params()
    log = JsonlLog(tmp_path / "events.jsonl")
    events = asyncio.run(JointUpdate().step(ps, CreditResult("trace", "trace", trace="T"), engine_for(backend), step=1, events=log))
    assert len(backend.requests) == 2 and all(p.version == 0 for p in ps)
    assert not any(e.accepted for e in events)
    (record,) = log.read()
    assert record["kind"] == "optimizer_reply_rejected" and record["optimizer"] == "joint"


@ENGINE_RUNS
@given(st.lists(st.one_of(any_text, structural, st.sampled_from(HOSTILE[:10])), min_size=2, max_size=2),
       st.sampled_from(range(6)), st.sampled_from(["tgd", "opro"]))
def test_tgd_and_opro_keep_a_valid_value_under_any_reply(replies, index, name):
    replies = [r if "<NEW_VALUE>" in r else f"<NEW_VALUE>{r}</NEW_VALUE>" for r in replies]
    param = params()[index]
    backend = ScriptedBackend(replies=list(replies))
    opt = TGD() if name == "tgd" else OPRO()
    credit = CreditResult("backprop", "per_parameter", feedback={param.id: [ParameterFeedback("e", "fix")]}, scores={"e": 0.0})
    asyncio.run(opt.step([param], credit, engine_for(backend), step=1))
    assert param.rejection(param.value) is None and len(param.history) <= 2
