"""Parameter kinds (choice, demos) and mechanical validators: declared on the Parameter, enforced by every optimizer
as a rejection (one re-ask quoting the reason, then the old value kept and an event naming the validator)."""
from __future__ import annotations

import asyncio
import json
import math

import pytest

from textgrad_core.credit import CreditResult, ParameterFeedback
from textgrad_core.engines import ScriptedBackend, build_engine
from textgrad_core.errors import ConfigError, ParseError
from textgrad_core.optimizers import OPRO, TGD, JointUpdate, Proposal, apply_proposal
from textgrad_core.optimizers.kinds import coerce_value
from textgrad_core.runlog import JsonlLog
from textgrad_core.validators import (Compiles, MaxLength, NumberRange, Pattern, ValueRejected, default_validators,
                                      parse_code_bounded)
from textgrad_core.variable import Parameter

TRAIN_IDS = ["train-1", "train-2", "train-3"]
DEMOS = [{"id": "train-1", "input": "2 + 2?", "output": "4"}]


def engine_for(backend):
    return build_engine({"provider": "scripted", "model": "m", "cache": {"enabled": False}}, backend=backend)


def per_param(*params):
    return CreditResult("backprop", "per_parameter", feedback={p.id: [ParameterFeedback("e1", "do better")] for p in params})


def delimited(value) -> str:
    return f"<NEW_VALUE>\n{value}\n</NEW_VALUE>"


# ---- declaring kinds and validators -------------------------------------------------------------------------
def test_kind_declarations_are_checked_with_one_clear_error():
    with pytest.raises(ConfigError, match="is a choice: declare its set"):
        Parameter(value="a", role="r", name="p", kind="choice")
    with pytest.raises(ConfigError, match="initial value is rejected by validator 'choice'"):
        Parameter(value="c", role="r", name="p", kind="choice", choices=["a", "b"])
    with pytest.raises(ConfigError, match="only for kind='choice'"):
        Parameter(value="a", role="r", name="p", choices=["a"])
    with pytest.raises(ConfigError, match="not a training example"):
        Parameter(value=[{"id": "test-9", "input": "q", "output": "a"}], role="r", name="d", kind="demos", allowed_ids=TRAIN_IDS)
    with pytest.raises(ConfigError, match="unknown kind 'list'"):
        Parameter(value=[], role="r", name="p", kind="list")
    with pytest.raises(ConfigError, match="initial value is rejected by validator 'pattern'"):
        Parameter(value="no answer line", role="r", name="p", validators=[{"pattern": r"^Answer:"}])
    with pytest.raises(ConfigError, match="not understood"):
        Parameter(value="x", role="r", name="p", validators=[{"colour": "red"}])
    with pytest.raises(ConfigError, match="pool has ids outside allowed_ids"):
        Parameter(value=[], role="r", name="d", kind="demos", allowed_ids=["train-1"],
                  pool=[{"id": "val-1", "input": "q", "output": "a"}])


def test_every_kind_gets_its_default_validators():
    assert [v.name for v in Parameter(value="x", role="r", name="t").validators] == ["max_length"]
    assert [v.name for v in Parameter(value="x = 1\n", role="r", name="c", kind="code").validators] == ["max_length", "compiles"]
    assert [v.name for v in Parameter(value=1, role="r", name="n", kind="number").validators] == ["number_range"]
    assert [v.name for v in Parameter(value=3, role="r", name="k", kind="choice", choices=[1, 3, 5]).validators] == ["choice"]
    assert [v.name for v in Parameter(value=[], role="r", name="d", kind="demos").validators] == ["demos"]
    assert default_validators("unknown") == []


def test_default_max_length_is_relative_to_the_initial_value():
    short = Parameter(value="x" * 100, role="r", name="a")
    long = Parameter(value="x" * 1000, role="r", name="b")
    assert MaxLength().limit(short) == 2100 and MaxLength().limit(long) == 4000  # max(4 * n, n + 2000)
    assert short.rejection("x" * 2100) is None
    failure = short.rejection("x" * 2101)
    assert failure.validator == "max_length" and "2101 characters; at most 2100" in str(failure)
    # After an update the limit still counts from the initial value, not the current one.
    short.update("x" * 2000, step=1)
    assert short.rejection("x" * 2101) is not None
    assert MaxLength(50).limit(long) == 50


def test_number_validator_rejects_nan_infinity_and_values_out_of_range():
    p = Parameter(value=0.5, role="threshold", name="t", kind="number", validators=[{"range": [0, 1]}])
    for bad, why in [(math.nan, "finite"), (math.inf, "finite"), (-math.inf, "finite"), (1.5, "above the maximum 1"),
                     (-0.1, "below the minimum 0")]:
        assert why in str(p.rejection(bad))
    assert p.rejection(0.75) is None
    assert "integer" in NumberRange(integer=True).check(2.5, None)
    with pytest.raises(ConfigError, match="empty"):
        NumberRange(2, 1)


def test_code_validators_bound_the_parse_and_can_require_a_function():
    assert Compiles().check("def f(x):\n    return x\n", None) is None
    assert "does not define a top-level function 'f'" in Compiles("f").check("def g():\n    pass\n", None)
    assert Compiles("f").check("def f():\n    pass\n", None) is None
    hostile = {"deep unary": "-" * 100000 + "1", "deep brackets": "(" * 100000, "long chain": "1+" * 200000 + "1",
               "attribute chain": "a." * 100000 + "a", "null byte": "x = 1\x00", "not python": "def f(:"}
    for name, src in hostile.items():
        reason = Compiles().check(src, None)
        assert reason, name  # a clear rejection, never RecursionError/MemoryError in this process
    with pytest.raises(ParseError, match="at most 10 are parsed"):
        parse_code_bounded("x = 1  # long", max_chars=10)


def test_task_validators_by_function_and_pattern():
    def keeps_answer_line(value):
        """keep the 'Answer:' line"""
        return None if "Answer:" in value else "the 'Answer:' line was removed"

    def crashes(value):
        if "y" in value:
            raise KeyError("boom")

    p = Parameter(value="Think. End with Answer: N", role="r", name="p", validators=[keeps_answer_line])
    assert str(p.rejection("Think.")) == "rejected by validator 'keeps_answer_line': the 'Answer:' line was removed"
    q = Parameter(value="Answer: x", role="r", name="q", validators=[crashes])
    assert "the check raised KeyError" in str(q.rejection("Answer: y"))
    assert Pattern(r"^Answer:").check("a\nAnswer: 3", None) is None  # multiline: '^' matches at each line
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        Pattern("(")


# ---- kinds: coercion of a reply --------------------------------------------------------------------------------
def test_choice_replies_are_matched_to_the_declared_objects():
    k = Parameter(value=3, role="number of samples", name="k", kind="choice", choices=[1, 3, 5])
    assert coerce_value(k, "5") == 5 and isinstance(coerce_value(k, " 5 "), int)
    assert coerce_value(k, 5.0) == 5
    model = Parameter(value="gpt-4o-mini", role="model", name="model", kind="choice", choices=["gpt-4o-mini", "gpt-4o"])
    assert coerce_value(model, "GPT-4O") == "gpt-4o"
    with pytest.raises(ValueRejected, match="not one of the allowed choices"):
        coerce_value(model, "claude")


def test_demos_replies_must_be_json_lists_of_training_examples():
    d = Parameter(value=DEMOS, role="few-shot demos", name="demos", kind="demos", allowed_ids=TRAIN_IDS)
    good = [{"id": "train-2", "input": "3 + 3?", "output": "6"}, DEMOS[0]]
    assert coerce_value(d, json.dumps(good)) == good
    assert coerce_value(d, "```json\n" + json.dumps(good) + "\n```") == good
    cases = {"not json": ("[{id: 1", "JSON list"),
             "not a list": ('{"id": "train-1"}', "got a dict"),
             "val id": (json.dumps([{"id": "val-7", "input": "q", "output": "a"}]), "not a training example"),
             "missing key": (json.dumps([{"id": "train-1", "input": "q"}]), "exactly the keys id, input, output"),
             "twice": (json.dumps([DEMOS[0], DEMOS[0]]), "appears twice"),
             "output not text": (json.dumps([{"id": "train-1", "input": "q", "output": 4}]), "strings")}
    for name, (reply, why) in cases.items():
        with pytest.raises(ParseError, match=why):
            coerce_value(d, reply)


def test_text_with_a_lone_surrogate_is_rejected_not_written():
    p = Parameter(value="x", role="r", name="p")
    with pytest.raises(ValueRejected, match="lone surrogate"):
        coerce_value(p, "bad \ud800 value")


# ---- optimizers: rejection = re-ask, then keep + event ----------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["tgd", "opro"])
def test_a_value_failing_a_validator_is_reasked_then_kept_with_an_event(optimizer, tmp_path):
    param = Parameter(value="Solve it. Answer: N", role="instruction", name="instruction",
                      validators=[{"pattern": "Answer:", "description": "keep the 'Answer:' line"}])
    backend = ScriptedBackend(replies=[delimited("Solve it."), delimited("x" * 5000)])
    log = JsonlLog(tmp_path / "events.jsonl")
    opt = TGD() if optimizer == "tgd" else OPRO()
    credit = per_param(param) if optimizer == "tgd" else CreditResult("outcome", "scores", scores={"e1": 0.2})
    events = asyncio.run(opt.step([param], credit, engine_for(backend), step=2, events=log))
    assert len(backend.requests) == 2
    first, reask = backend.requests
    assert "keep the 'Answer:' line" in first.user_text  # the contract is in the prompt
    assert "rejected by validator 'pattern': keep the 'Answer:' line (no match found)" in reask.messages[-1].content
    assert param.value == "Solve it. Answer: N" and param.version == 0
    assert not events[0].accepted and "rejected optimizer value, kept v0" in events[0].reason
    (record,) = log.read()
    assert record["kind"] == "optimizer_reply_rejected" and record["validator"] == "max_length"
    assert "5000 characters; at most 2019" in record["reason"]


def test_tgd_prompt_states_the_choice_contract_and_applies_a_valid_choice():
    k = Parameter(value=3, role="number of samples", name="k", kind="choice", choices=[1, 3, 5])
    backend = ScriptedBackend(replies=[delimited("seven"), delimited("5")])
    asyncio.run(TGD().step([k], per_param(k), engine_for(backend), step=1))
    assert "one of these values, written exactly as listed: 1, 3, 5" in backend.requests[0].user_text
    assert "not one of the allowed choices" in backend.requests[1].messages[-1].content
    assert k.value == 5 and k.version == 1


def test_tgd_demos_are_shown_as_json_with_the_pool_and_validated(tmp_path):
    pool = [{"id": i, "input": f"q{i}", "output": f"a{i}"} for i in TRAIN_IDS]
    d = Parameter(value=DEMOS, role="few-shot demos", name="demos", kind="demos", pool=pool)
    assert d.allowed_ids == TRAIN_IDS
    leak = [{"id": "test-1", "input": "q", "output": "a"}]
    backend = ScriptedBackend(replies=[delimited(json.dumps(leak)), delimited(json.dumps(leak))])
    log = JsonlLog(tmp_path / "events.jsonl")
    asyncio.run(TGD().step([d], per_param(d), engine_for(backend), step=1, events=log))
    prompt = backend.requests[0].user_text
    assert json.dumps(DEMOS, indent=2) in prompt and '"id": "train-3"' in prompt and "training examples" in prompt
    assert d.value == DEMOS and log.read()[0]["validator"] == "demos"


def test_joint_schema_and_json_carry_choices_and_demos_and_reject_a_test_demo(tmp_path):
    k = Parameter(value=3, role="k", name="k", kind="choice", choices=[1, 3, 5])
    d = Parameter(value=DEMOS, role="demos", name="demos", kind="demos", allowed_ids=TRAIN_IDS)
    bad = {"reasoning": "r", "updates": {"k": 5, "demos": [{"id": "test-4", "input": "q", "output": "a"}]}}
    good = {"reasoning": "r", "updates": {"k": 5, "demos": [{"id": "train-2", "input": "q", "output": "a"}]}}
    backend = ScriptedBackend(replies=[json.dumps(bad), json.dumps(good)])
    trace = CreditResult("trace", "trace", trace="TRACE")
    asyncio.run(JointUpdate().step([k, d], trace, engine_for(backend), step=1, events=JsonlLog(tmp_path / "e.jsonl")))
    schema = backend.requests[0].response_format.json_schema["properties"]["updates"]["properties"]
    assert schema["k"] == {"enum": [1, 3, 5]} and schema["demos"]["type"] == "array"
    shown = json.loads(backend.requests[0].user_text.split("<PARAMETERS_JSON>")[1].split("</PARAMETERS_JSON>")[0])
    assert shown["k"]["choices"] == [1, 3, 5] and shown["demos"]["value"] == DEMOS
    assert "not a training example" in backend.requests[1].messages[-1].content
    assert k.value == 5 and d.value == good["updates"]["demos"]


def test_apply_proposal_never_applies_a_value_its_validators_reject():
    p = Parameter(value=0.5, role="t", name="t", kind="number")
    events = apply_proposal([p], Proposal(values={"t": math.nan}), step=1)
    assert p.value == 0.5 and p.version == 0 and not events[0].accepted and "finite" in events[0].reason
