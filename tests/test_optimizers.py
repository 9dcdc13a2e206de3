"""Optimizers: joint (OptoPrime-style JSON), OPRO meta-prompt, TGD memory, and the optimizer/credit compatibility check."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from textgrad_core.credit import CreditResult, ParameterFeedback
from textgrad_core.engines import ScriptedBackend, build_engine
from textgrad_core.errors import ConfigError
from textgrad_core.optimizers import TGD
from textgrad_core.optimizers import OPRO, JointUpdate
from textgrad_core.runlog import JsonlLog
from textgrad_core.variable import Parameter

CODE = "def solve(x):\n    return x\n"


def engine_for(backend: ScriptedBackend):
    return build_engine({"provider": "scripted", "model": "m", "cache": {"enabled": False}}, backend=backend)


def run(coro):
    return asyncio.run(coro)


def between(text: str, open_tag: str, close_tag: str) -> str:
    start = text.index(open_tag) + len(open_tag)
    return text[start:text.index(close_tag, start)]


def new_value(value: str) -> str:
    return f"Here it is.\n<NEW_VALUE>\n{value}\n</NEW_VALUE>"


def three_params() -> list[Parameter]:
    return [Parameter(value="Answer briefly.", name="instruction", role="system prompt of the solver",
                      constraints=["Keep it under 50 words."]),
            Parameter(value=0.5, name="threshold", role="confidence threshold", kind="number"),
            Parameter(value=CODE, name="solver.code", role="the solver function", kind="code")]


TRACE_CREDIT = CreditResult(strategy="trace", kind="trace", trace="<OP name=solve>output 3, expected 4</OP> TRACE-MARKER")


# ---- joint -------------------------------------------------------------------------------------------------
def test_joint_applies_a_reply_updating_text_number_and_code():
    reply = {"reasoning": "The solver is off by one.",
             "updates": {"instruction": "Answer briefly and check the count.", "threshold": 0.75,
                         "solver.code": "def solve(x):\n    return x + 1\n"}}
    backend = ScriptedBackend(replies=[json.dumps(reply)])
    params = three_params()
    events = run(JointUpdate().step(params, TRACE_CREDIT, engine_for(backend), step=1))

    assert len(backend.requests) == 1
    request = backend.requests[0]
    assert request.response_format is not None and request.response_format.type == "json_schema"
    schema = request.response_format.json_schema
    assert schema["required"] == ["reasoning", "updates"]
    assert schema["properties"]["updates"]["properties"] == {
        "instruction": {"type": "string"}, "threshold": {"type": "number"}, "solver.code": {"type": "string"}}
    user = request.user_text
    assert "<JOINT_UPDATE>" in user
    shown = json.loads(between(user, "<PARAMETERS_JSON>", "</PARAMETERS_JSON>"))
    assert shown == {"instruction": {"kind": "text", "role": "system prompt of the solver", "value": "Answer briefly.",
                                     "constraints": ["Keep it under 50 words."], "contract": ["at most 2015 characters"]},
                     "threshold": {"kind": "number", "role": "confidence threshold", "value": 0.5, "constraints": [],
                                   "contract": ["a single number, written as digits (e.g. 0.5 or 12)", "a finite number"]},
                     "solver.code": {"kind": "code", "role": "the solver function", "value": CODE, "constraints": [],
                                     "contract": [f"at most {len(CODE) + 2000} characters", "Python source that compiles"]}}
    assert "TRACE-MARKER" in between(user, "<FEEDBACK>", "</FEEDBACK>")

    by_id = {p.id: p for p in params}
    assert by_id["instruction"].value == "Answer briefly and check the count."
    assert by_id["threshold"].value == 0.75
    assert by_id["solver.code"].value == "def solve(x):\n    return x + 1\n"
    for p in params:
        assert [h.version for h in p.history] == [0, 1] and p.history[1].step == 1
    assert sorted(e.param_id for e in events if e.accepted) == ["instruction", "solver.code", "threshold"]


INVALID_REPLIES = {
    "unknown id": ({"reasoning": "r", "updates": {"instruction": "Better.", "no_such_param": "x"}},
                   "unknown parameter id 'no_such_param'"),
    "type error": ({"reasoning": "r", "updates": {"threshold": "high"}}, "'threshold' is a number parameter"),
    "text not a string": ({"reasoning": "r", "updates": {"instruction": 7}}, "'instruction' is text, got a int"),
    "code does not parse": ({"reasoning": "r", "updates": {"solver.code": "def solve(x) return x"}},
                            "the new code for 'solver.code' does not parse"),
    "not an object": (["instruction", "Better."], 'not a JSON object with an "updates" object'),
}


@pytest.mark.parametrize("case", sorted(INVALID_REPLIES))
def test_joint_reasks_once_then_keeps_every_parameter_and_logs(case, tmp_path: Path):
    reply, error = INVALID_REPLIES[case]
    backend = ScriptedBackend(replies=[json.dumps(reply), json.dumps(reply)])
    params = three_params()
    log = JsonlLog(tmp_path / "events.jsonl")
    events = run(JointUpdate().step(params, TRACE_CREDIT, engine_for(backend), step=3, events=log))

    assert len(backend.requests) == 2  # the first try and exactly one re-ask
    reask = backend.requests[1]
    assert [m.role for m in reask.messages] == ["system", "user", "assistant", "user"]
    assert reask.messages[2].content == json.dumps(reply)
    assert error in reask.messages[3].content
    assert all(p.version == 0 and len(p.history) == 1 for p in params)  # nothing applied, not even valid parts
    assert params[0].value == "Answer briefly." and params[1].value == 0.5 and params[2].value == CODE
    assert not any(e.accepted for e in events) and len(events) == 3
    [record] = log.read()
    assert record["kind"] == "optimizer_reply_rejected" and record["optimizer"] == "joint" and record["step"] == 3
    assert error in record["reason"]
    assert record["kept_versions"] == {"instruction": 0, "threshold": 0, "solver.code": 0}


def test_joint_applies_a_valid_reply_after_the_reask():
    bad = {"reasoning": "r", "updates": {"threshold": "0.9"}}
    good = {"reasoning": "r", "updates": {"threshold": 0.9}}
    backend = ScriptedBackend(replies=[json.dumps(bad), json.dumps(good)])
    params = three_params()
    run(JointUpdate().step(params, TRACE_CREDIT, engine_for(backend), step=1))
    assert len(backend.requests) == 2
    assert params[1].value == 0.9 and params[1].history[-1].reason == "joint update (after re-ask)"
    assert params[0].version == 0 and params[2].version == 0  # untouched parameters get no new version


def test_joint_reads_json_surrounded_by_prose():
    text = 'Sure.\n{"reasoning": "r", "updates": {"instruction": "Count twice."}}\nDone.'
    backend = ScriptedBackend(replies=[text])
    params = three_params()
    run(JointUpdate().step(params, TRACE_CREDIT, engine_for(backend), step=1))
    assert params[0].value == "Count twice." and len(backend.requests) == 1


# ---- OPRO --------------------------------------------------------------------------------------------------
def scores_credit(score: float) -> CreditResult:
    return CreditResult(strategy="outcome", kind="scores", scores={"e1": score, "e2": score})


def test_opro_meta_prompt_holds_only_the_top_k_sorted_ascending():
    backend = ScriptedBackend(replies=[new_value("value-bravo"), new_value("value-charlie"), new_value("value-delta")])
    engine = engine_for(backend)
    param = Parameter(value="value-alpha", name="instruction", role="system prompt")
    opro = OPRO(top_k=2)
    for step, score in enumerate([0.5, 0.9, 0.1], 1):  # alpha scores 0.5, bravo 0.9, charlie 0.1
        run(opro.step([param], scores_credit(score), engine, step))
    assert param.value == "value-delta" and len(backend.requests) == 3

    first = backend.requests[0].user_text
    assert "value-alpha" in between(first, "<FEEDBACK>", "</FEEDBACK>") and 'score="0.500"' in first
    last = backend.requests[2].user_text
    history = between(last, "<FEEDBACK>", "</FEEDBACK>")
    assert "value-charlie" not in history  # the lowest of three, beyond top_k=2
    assert history.index("value-alpha") < history.index("value-bravo")  # ascending: the best comes last
    assert history.index('score="0.500"') < history.index('score="0.900"')
    assert between(last, "<BEST_VALUE>\n", "\n</BEST_VALUE>") == "value-bravo"
    assert "<CURRENT_VALUE>" not in last


def test_opro_averages_a_value_seen_again_and_records_each_step_once():
    backend = ScriptedBackend(reply_fn=lambda r: new_value("value-bravo"))
    param = Parameter(value="value-alpha", name="instruction", role="system prompt")
    opro = OPRO(top_k=5)
    run(opro.propose([param], scores_credit(0.2), engine_for(backend), 1, sample_index=0))
    run(opro.propose([param], scores_credit(0.2), engine_for(backend), 1, sample_index=1))  # same step: not again
    run(opro.propose([param], scores_credit(0.6), engine_for(backend), 2))
    [entry] = opro.history.values()
    assert entry.steps == [1, 2] and entry.score == pytest.approx(0.4)
    assert param.version == 0  # propose never applies


# ---- TGD ---------------------------------------------------------------------------------------------------
def feedback(text: str) -> CreditResult:
    return CreditResult(strategy="backprop", kind="per_parameter",
                        feedback={"instruction": [ParameterFeedback("e1", text)]})


@pytest.mark.parametrize("memory", [1, 2])
def test_tgd_memory_renders_past_values_and_their_feedback(memory):
    backend = ScriptedBackend(replies=[new_value(v) for v in ("value-one", "value-two", "value-three")])
    engine = engine_for(backend)
    param = Parameter(value="value-zero", name="instruction", role="system prompt")
    tgd = TGD(memory=memory, update_examples=["EXAMPLE: 'Be terse.' -> 'Be terse; show the final count.'"])
    for step, text in enumerate(["feedback-one", "feedback-two", "feedback-three"], 1):
        run(tgd.step([param], feedback(text), engine, step))
    assert param.value == "value-three"

    prompts = [r.user_text for r in backend.requests]
    assert all("<UPDATE_EXAMPLES>\nEXAMPLE: 'Be terse.' -> 'Be terse; show the final count.'" in p for p in prompts)
    assert "<PAST_UPDATES>" not in prompts[0]
    past = between(prompts[1], "<PAST_UPDATES>", "</PAST_UPDATES>")
    assert '<PAST_VALUE n="1">\nvalue-zero\n</PAST_VALUE>' in past and "feedback-one" in past
    past = between(prompts[2], "<PAST_UPDATES>", "</PAST_UPDATES>")
    assert '\nvalue-one\n</PAST_VALUE>' in past and "feedback-two" in past
    assert ("value-zero" in past and "feedback-one" in past) == (memory == 2)
    if memory == 2:
        assert past.index("value-zero") < past.index("value-one")  # oldest first
    assert "feedback-three" not in past and "value-two" not in past  # the current value is not memory


def test_tgd_without_memory_shows_none():
    backend = ScriptedBackend(replies=[new_value("value-one"), new_value("value-two")])
    param = Parameter(value="value-zero", name="instruction", role="system prompt")
    tgd = TGD()
    for step in (1, 2):
        run(tgd.step([param], feedback("fb"), engine_for(backend), step))
    assert all("<PAST_UPDATES>" not in r.user_text and "<UPDATE_EXAMPLES>" not in r.user_text for r in backend.requests)


def test_tgd_samples_are_distinct_requests_sharing_one_memory_entry():
    backend = ScriptedBackend(reply_fn=lambda r: new_value(f"value-sample-{r.sample_index}"))
    param = Parameter(value="value-zero", name="instruction", role="system prompt")
    tgd = TGD(memory=3)

    async def propose_three():
        return await asyncio.gather(*(tgd.propose([param], feedback("fb"), engine_for(backend), 1, sample_index=i,
                                                  temperature=0.7) for i in range(3)))

    proposals = run(propose_three())
    assert [p.values["instruction"] for p in proposals] == [f"value-sample-{i}" for i in range(3)]
    assert len({r.cache_key("scripted", "m") for r in backend.requests}) == 3
    assert {r.temperature for r in backend.requests} == {0.7}
    assert param.version == 0 and len(tgd.past_updates(param, step=2)) == 1


# ---- configuration -----------------------------------------------------------------------------------------
def test_an_incompatible_optimizer_and_credit_pair_is_a_config_error():
    from credit.backprop import Backprop
    from experiments.factory import CREDIT, build_optimizer

    with pytest.raises(ConfigError) as info:
        build_optimizer({"name": "joint"}, Backprop())
    message = str(info.value)
    assert "optimizer=joint cannot use credit=backprop" in message and "'per_parameter'" in message
    fits = [name for name, cls in CREDIT.items() if cls.kind == "trace"]
    assert fits and all(name in message.split("fit:")[1] for name in fits)
    trace_credit = CREDIT[fits[0]]()
    assert isinstance(build_optimizer({"name": "joint"}, trace_credit), JointUpdate)
    assert isinstance(build_optimizer({"name": "opro"}, Backprop()), OPRO)


@pytest.mark.parametrize("overrides", [["optimizer=tgd", "optimizer.memory=2"], ["optimizer=joint", "credit=trace"],
                                       ["optimizer=opro", "search=greedy"], ["search=beam"], ["search=pareto"]])
def test_every_optimizer_and_search_config_builds(overrides):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.factory import build_credit, build_optimizer, build_search

    config_dir = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=overrides), resolve=False)
    cfg["search"] = {k: (0 if k == "seed" else v) for k, v in cfg["search"].items()}  # ${trainer.seed}
    optimizer = build_optimizer(cfg["optimizer"], build_credit(cfg["credit"]))
    search = build_search(cfg["search"], optimizer)
    assert (search is None) == (cfg["search"]["name"] == "none")
    if search is not None:
        assert search.selection == cfg["search"]["name"] and search.temperature > 0
