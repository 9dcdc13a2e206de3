"""The public API from the package root: lazy import, engines, backward by any strategy, script steps, judges,
unscored losses everywhere."""
import asyncio
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import textgrad_core as tc
from credit.backprop import Backprop
from credit.trace import TracePropagation
from textgrad_core.loss import parse_score
from tests.scripted import scripted_engine

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)


def test_plain_import_loads_no_heavy_dependency_and_every_exported_name_resolves():
    proc = run_python(["-X", "importtime", "-c", "import sys, textgrad_core; print(sorted(m for m in "
                       "('openai', 'anthropic', 'networkx', 'pydantic', 'httpx') if m in sys.modules))"])
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr[-500:]
    imported = [l.split("|")[-1].strip() for l in proc.stderr.splitlines() if "|" in l]
    assert not any(m.startswith(("textgrad_core.", "pydantic", "networkx")) for m in imported)
    missing = [n for n in tc.__all__ if getattr(tc, n, None) is None]
    assert not missing
    assert tc.__version__ == version("textgrad-core") and tc.errors.ConfigError is tc.ConfigError
    with pytest.raises(AttributeError):
        tc.no_such_name


def two_stage(eng):
    plan = tc.Parameter("Outline.", role="instruction of the planner", name="planner")
    solve = tc.Parameter("Solve.", role="instruction of the solver", name="solver")
    planner = tc.LLMCall(eng, plan, name="planner")
    solver = tc.FormattedLLMCall(eng, "Q: {q}\nPlan: {plan}", {"q": "question", "plan": "plan"}, system_prompt=solve,
                                 name="solver")
    metric = tc.MetricLoss(lambda a, e: tc.MetricResult(score=float(e in a), feedback=f"expected {e}"))
    losses = [metric(solver(q=q, plan=planner(q)), a) for q, a in (("1+1?", "2"), ("2+2?", "4"))]
    return plan, solve, losses


def reply(request) -> str:
    if request.tag.startswith("optimizer:joint"):
        return json.dumps({"reasoning": "r", "updates": {"planner": "Outline, then check."}})
    if request.tag.startswith("optimizer"):
        return "<NEW_VALUE>\nnew value\n</NEW_VALUE>"
    return "Add a check." if request.tag.startswith("credit") else "3"


@pytest.mark.parametrize("credit, calls", [("backprop", 6), ("semantic", 6), ("trace", 0), ("outcome", 0),
                                           ("adaptive", 0)])
def test_backward_by_every_strategy_name_walks_the_recorded_graphs(credit, calls):
    eng, backend = scripted_engine(reply_fn=reply)
    plan, solve, losses = two_stage(eng)
    forward = len(backend.requests)
    result = tc.backward(losses, credit=credit, engine=eng)
    assert result.strategy == credit and len(backend.requests) - forward == calls
    assert set(result.scores) == {"0", "1"} and plan.pending_credit == [result] == solve.pending_credit
    if credit in ("backprop", "semantic"):
        assert [f.example_id for f in result.feedback["planner"]] == ["0", "1"]
    if credit in ("trace", "adaptive"):
        assert 'id="planner"' in result.trace and "solver(system_prompt=solver" in result.trace


def test_loss_backward_equals_tc_backward_and_sends_the_same_requests():
    requests = []
    for use_method in (True, False):
        eng, backend = scripted_engine(reply_fn=reply)
        _, _, losses = two_stage(eng)
        result = losses[0].backward(engine=eng) if use_method else tc.backward(losses[0], engine=eng)
        requests.append(sorted(r.user_text for r in backend.requests_tagged("credit")))
        assert set(result.feedback) == {"solver", "planner"}
    assert requests[0] == requests[1] and len(requests[0]) == 3


def test_script_step_consumes_backward_then_needs_a_new_backward():
    eng, backend = scripted_engine(reply_fn=reply)
    plan, solve, losses = two_stage(eng)
    opt = tc.TGD([plan, solve], engine=eng)
    with pytest.raises(tc.ConfigError, match="call tc.backward"):
        opt.step()
    tc.backward(losses, engine=eng)
    events = opt.step()
    assert plan.value == solve.value == "new value" and {e.param_id for e in events if e.accepted} == {"planner", "solver"}
    assert plan.history[-1].step == 1 and plan.pending_credit == []
    with pytest.raises(tc.ConfigError, match="no credit to apply"):
        opt.step()


def test_joint_update_by_name_after_trace_credit_and_a_mismatch_is_clear():
    eng, _ = scripted_engine(reply_fn=reply)
    plan, solve, losses = two_stage(eng)
    opt = tc.optimizer("joint", [plan, solve], engine=eng)
    tc.backward(losses, credit="trace")  # no engine needed: trace propagation makes no call
    opt.step()
    assert plan.value == "Outline, then check." and solve.value == "Solve."
    tc.backward(losses, credit="backprop", engine=eng)
    with pytest.raises(tc.ConfigError, match="optimizer joint cannot use credit 'backprop'"):
        opt.step()


def test_async_twins_and_sync_calls_inside_a_running_loop():
    eng, _ = scripted_engine(reply_fn=reply)
    plan, solve, losses = two_stage(eng)

    async def main():
        result = await tc.abackward(losses, credit=Backprop(), engine=eng)  # an instance works too
        events = await tc.TGD([plan], engine=eng).astep()
        sync_result = tc.backward(losses, credit=TracePropagation())  # blocking call inside a running loop
        return result, sync_result, events

    result, sync_result, events = asyncio.run(main())
    assert result.strategy == "backprop" and sync_result.kind == "trace" and plan.value == "new value"
    assert [e.param_id for e in events] == ["planner"]


def test_the_trainer_protocol_of_optimizers_is_unchanged():
    eng, _ = scripted_engine(reply_fn=reply)
    plan, _, losses = two_stage(eng)
    credit = tc.backward(losses, engine=eng)
    events = asyncio.run(tc.TGD().step([plan], credit, eng, 7))
    assert plan.value == "new value" and plan.history[-1].step == 7 and events[0].accepted


def test_backward_mistakes_are_clear():
    eng, _ = scripted_engine(reply_fn=reply)
    _, _, losses = two_stage(eng)
    with pytest.raises(tc.ConfigError, match="makes LLM calls: pass engine="):
        tc.backward(losses, credit="backprop")
    with pytest.raises(tc.ConfigError, match="Unknown credit strategy 'backprob'"):
        tc.backward(losses, credit="backprob", engine=eng)
    with pytest.raises(tc.ConfigError, match="takes loss Variables"):
        tc.backward(["not a loss"], engine=eng)
    with pytest.raises(tc.ConfigError, match="one distinct id per loss"):
        tc.backward(losses, credit="trace", example_ids=["a", "a"])


def test_engines_from_one_call():
    sim = tc.engine("sim")
    assert sim.simulated and sim.provider == "sim"
    out = tc.LLMCall(sim, "Reason step by step.")("What is 2 + 2?")
    assert "I reasoned step by step." in out.value  # the generic world knows the guidance
    assert tc.engine({"provider": "sim", "model": "sim-2", "cache": {"enabled": False}}).model == "sim-2"
    with pytest.raises(tc.ConfigError, match="needs model="):
        tc.engine(provider="openai")
    with pytest.raises(tc.ConfigError, match="Unknown engine provider 'gpt'"):
        tc.engine("gpt", model="x")


@pytest.mark.parametrize("text, score", [
    ("Good.\nSCORE: 0.8", 0.8), ("Score: 4/5", 0.8), ("score = 1", 1.0), ("**Score:** 7 / 10", 0.7),
    ("Score: 85%", 0.85), ("SCORE: 0", 0.0), ("Looks right to me.", None), ("Score: 7", None),
    ("Score: 3/0", None), ("SCORE: 0.2 ... on reflection SCORE: 0.6", 0.6),
])
def test_judge_scores_are_parsed_robustly_or_left_unscored(text, score):
    assert parse_score(text) == (pytest.approx(score) if score is not None else None)


def test_judge_with_a_template_of_your_own_and_a_reference_answer():
    eng, backend = scripted_engine(replies=["The response matches.\nScore: 9/10", "No score here."])
    judge = tc.JudgeLoss(eng, "Compare with the reference.", template="{instruction}\nQ: {question}\n"
                         "Gold: {reference}\nAnswer: {response}")
    answer = tc.Variable("42", role="answer")
    scored = judge(answer, "6 * 7?", reference="42")
    unscored = judge(answer, "6 * 7?", reference="42")
    assert backend.requests[0].user_text == "Compare with the reference.\nQ: 6 * 7?\nGold: 42\nAnswer: 42"
    assert scored.score == pytest.approx(0.9) and unscored.score is None and not unscored.scored
    with pytest.raises(tc.ConfigError, match=r"unknown field\(s\) \['answer'\]"):
        tc.JudgeLoss(eng, "x", template="{answer}")
    with pytest.raises(tc.ConfigError, match="must contain {response}"):
        tc.JudgeLoss(eng, "x", template="{question}")
    with pytest.raises(tc.ConfigError, match="pass reference="):
        judge(answer, "q")
    eng2, backend2 = scripted_engine(replies=["SCORE: 1"])
    tc.JudgeLoss(eng2, "Judge.")(answer, "6 * 7?", reference="42")
    assert "<REFERENCE_ANSWER>\n42\n</REFERENCE_ANSWER>" in backend2.requests[0].user_text


def unscored_batch():
    p = tc.Parameter("Be brief.", role="instruction", name="p")
    eng, _ = scripted_engine(replies=["Correct answer, well done.", "Wrong.\nSCORE: 0"])
    judge = tc.JudgeLoss(eng, "Judge it.")
    losses = [judge(tc.join(p, q), q) for q in ("q1", "q2")]
    return p, losses


def test_an_unscored_loss_is_unscored_everywhere():
    p, losses = unscored_batch()
    trace = tc.backward(losses, credit="trace")
    assert '<EXAMPLE id="0" score="unscored">' in trace.trace and '<EXAMPLE id="1" score="0">' in trace.trace
    assert trace.scores == {"0": None, "1": 0.0} and trace.unscored == ["0"]
    outcome = tc.backward(losses, credit="outcome")
    assert outcome.details["mean_score"] == 0.0 and outcome.details["unscored"] == 1
    lines = [f.text for f in outcome.for_parameter(p)]
    assert lines == ["The evaluation gave no score on this example.", "The system scored 0.00 on this example."]
    eng, backend = scripted_engine(reply_fn=lambda r: "fix it")
    result = tc.backward(losses, credit=Backprop(skip_perfect=True), engine=eng)
    assert result.details["skipped_examples"] == []  # unscored is not known to be perfect: never skipped
    opro = tc.OPRO()
    opro.record([p], outcome, 1)
    assert [e.score for e in opro.history.values()] == [0.0]  # the mean over the scored example only
    only_unscored = tc.CreditResult("outcome", "scores", scores={"0": None})
    opro.record([tc.Parameter("x", role="r", name="q")], only_unscored, 2)
    assert len(opro.history) == 1  # nothing scored: nothing recorded (never a 0)
