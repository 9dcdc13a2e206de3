"""Ids that reach prompts come from the run itself: tape positions, canonical renumbering, parameter names."""
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import textgrad_core as tc
from textgrad_core.credit import canonical_traces
from textgrad_core.graph import Graph, canonicalize_ids
from tests.scripted import scripted_engine

ROOT = Path(__file__).resolve().parents[1]


def reply(request) -> str:
    if request.tag.startswith("optimizer:joint"):
        return json.dumps({"reasoning": "r", "updates": {"plan": "Plan carefully."}})
    if request.tag.startswith("optimizer"):
        return "<NEW_VALUE>\nPlan carefully.\n</NEW_VALUE>"
    if request.tag.startswith("credit"):
        return "Be more specific."
    return "a plan"


DELAYS = {"left": 0.0, "right": 0.03}  # outside the recorded values: only the timing changes


@tc.traced
async def shout(text: str, branch: str) -> str:
    """Upper-cases the text (after a pause, so that two branches can finish in either order)."""
    await asyncio.sleep(DELAYS[branch])
    return text.upper()


def metric(answer, example):
    return tc.MetricResult(score=0.0, feedback=f"Wrong: expected {example['answer']}.")


async def forward(eng, plan, example, flip: bool, taped: bool):
    """planner -> two concurrent branches -> join -> metric loss; `flip` swaps which branch finishes first."""
    async def body():
        planned = await tc.LLMCall(eng, plan, name="planner").acall(example["q"])
        DELAYS.update(left=0.03 if flip else 0.0, right=0.0 if flip else 0.03)
        left, right = await asyncio.gather(shout(planned, "left"), shout(planned, "right"))
        assert (left.id > right.id) == flip or not taped  # creation order on the tape really flipped
        return tc.MetricLoss(metric)(tc.join(left, right), example)
    if not taped:
        return await body()
    with tc.Tape(example["id"]):
        return await body()


def requests_of_a_run(flip: bool = False, taped: bool = True) -> list[str]:
    """Every request message of forward + semantic credit + TGD, then forward + trace credit + joint, sorted."""
    eng, backend = scripted_engine(reply_fn=reply)
    batch = [{"id": "ex-a", "q": "2 + 2?", "answer": "4"}, {"id": "ex-b", "q": "3 + 3?", "answer": "6"}]

    async def run():
        for credit, opt_cls in (("semantic", tc.TGD), ("trace", tc.JointUpdate)):
            plan = tc.Parameter("Plan.", role="instruction of the planner", name="plan")
            opt = opt_cls([plan], engine=eng)
            losses = [await forward(eng, plan, ex, flip, taped) for ex in batch]
            await tc.abackward(losses, credit=credit, engine=eng)
            await opt.astep()
    asyncio.run(run())
    return sorted(json.dumps([m.model_dump() for m in r.messages], sort_keys=True) for r in backend.requests)


def make_noise() -> None:
    """Process history that must not change any prompt: many variables and another, different run."""
    for i in range(321):
        tc.Variable(value=i, role="noise")
    with tc.Tape("other"):
        for i in range(17):
            tc.Variable(value=i, role="noise")
    requests_of_a_run(flip=True, taped=False)


@pytest.mark.parametrize("taped", [True, False])
def test_same_requests_alone_after_another_run_twice_and_whatever_branch_finishes_first(taped):
    code = ("import json; from tests.test_ids import requests_of_a_run; "
            f"print(json.dumps(requests_of_a_run(taped={taped})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    alone = json.loads(proc.stdout)
    make_noise()
    after_other = requests_of_a_run(taped=taped)
    again = requests_of_a_run(taped=taped)
    flipped = requests_of_a_run(flip=True, taped=taped)
    assert alone == after_other == again == flipped
    prompts = "\n".join(alone)
    # the ids really are in the prompts (so the equality above is about them), and none is provisional
    assert '<TARGET id=\\"v' in prompts and "v3 = shout(" in prompts and "_u" not in prompts


def test_each_tape_numbers_from_v0_nested_tapes_continue_and_parameters_keep_names():
    p = tc.Parameter("x", role="r", name="solver.instruction")
    with tc.Tape("a") as a:
        first = [tc.Variable(i, role="r") for i in range(3)]
        with tc.Tape("a-inner"):
            inner = tc.Variable(9, role="r")
    with tc.Tape("b"):
        other = tc.Variable(0, role="r")
    free = tc.Variable(0, role="r")
    assert [v.id for v in first] == ["v0", "v1", "v2"] and inner.id == "v3" and other.id == "v0"
    assert p.id == "solver.instruction" and p not in a.variables and first[0].example_id == "a"
    assert free.id.startswith("_u")  # provisional: renumbered before it can reach a prompt


def test_canonical_ids_number_each_loss_from_v0_and_give_shared_variables_s_ids():
    shared = tc.Variable("shared constant", role="c")
    p = tc.Parameter("p", role="r", name="p")
    losses = []
    for q in ("q1", "q2"):
        out = tc.join(p, shared, tc.Variable(q, role="question"))
        losses.append(tc.MetricLoss(metric)(out, {"answer": "x"}))
    canonicalize_ids(losses)
    assert shared.id == "s0" and p.id == "p"
    for loss in losses:
        out = loss.op.inputs[0][1]
        assert out.op.inputs[2][1].id == "v0" and out.id == "v1" and loss.id == "v2"
    graphs = [Graph.from_output(l) for l in losses]
    assert all("s0" in g and "v1" in g for g in graphs)


def test_two_examples_whose_graphs_both_have_v3_get_their_own_credit():
    eng, backend = scripted_engine(reply_fn=lambda r: f"reply {sum(map(ord, r.user_text))}")
    plan = tc.Parameter("Plan.", role="instruction", name="plan")
    losses = []
    for ex in ("A", "B"):
        with tc.Tape(f"ex-{ex}"):
            mid = tc.LLMCall(eng, plan, name="planner")(f"question {ex} " * (3 if ex == "A" else 1))
            out = tc.join(mid, "tail")
            losses.append(tc.MetricLoss(metric)(out, {"answer": ex}))
    assert [l.op.inputs[0][1].op.inputs[0][1].id for l in losses] == ["v1", "v1"]  # same id in both graphs
    result = tc.backward(losses, credit="backprop", engine=eng)
    assert [f.example_id for f in result.feedback["plan"]] == ["ex-A", "ex-B"]
    mids = [l.op.inputs[0][1].op.inputs[0][1] for l in losses]
    assert len(mids[0].feedback) == len(mids[1].feedback) == 1 and mids[0].feedback != mids[1].feedback
    trace = tc.backward(losses, credit="trace").trace
    assert trace.count('v1 = planner(system_prompt=plan, input=v0)') == 2
    assert '<EXAMPLE id="ex-A"' in trace and '<EXAMPLE id="ex-B"' in trace


def test_a_graph_with_two_variables_of_one_id_is_a_clear_error_not_a_silent_merge():
    with tc.Tape("t"):
        x = tc.Variable("x", role="r")  # v0
    bad = tc.Parameter("p", role="r", name="v0")
    with pytest.raises(tc.ConfigError, match="share the id 'v0'"):
        Graph.from_output(tc.join(x, bad))


def test_canonical_traces_rebuild_graphs_with_the_structural_ids():
    with tc.Tape("t") as tape:
        tc.Variable("unused", role="r")  # creation position 0, not on the loss's path
        out = tc.join(tc.Parameter("p", role="r", name="p"), "x")
        loss = tc.MetricLoss(metric)(out, {"answer": "y"})
    trace = tc.ExampleTrace("t", out, loss, Graph(tape.variables + [out, loss]))
    (canonical,) = canonical_traces([trace])
    assert out.id == "v1" and loss.id == "v2" and sorted(canonical.graph.g.nodes) == ["p", "v0", "v1", "v2"]
