"""Each module records the graph it should, and credit (backprop and trace) reaches every parameter it declares."""
import asyncio

import pytest

import textgrad_core as tc
from textgrad_core.engines import ScriptedBackend, build_engine
from textgrad_core.engines.sim import SimWorld
from textgrad_core.graph import Graph
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.modules import (MultiHopRAG, SampleAndFilter, SelfConsistency, SymbolicChecker, Tool, ToolAgent)
from textgrad_core.modules.cascade import Cascade, Tier
from textgrad_core.modules.medprompt import Medprompt
from textgrad_core.variable import Tape

QUESTION = "What is 2 plus 3?"
WORLD = SimWorld(task="t", rubric=[], answers={QUESTION: "5"}, base_accuracy=0.5)


def sim():
    return tc.engine("sim", sim_world=WORLD)


def scripted(replies):
    it = iter(replies)
    return build_engine({"provider": "scripted", "cache": {"mode": "off"}}, backend=ScriptedBackend(reply_fn=lambda r: next(it)))


def wrong(prediction, example):
    """Always wrong, so that every strategy has feedback to pass back."""
    return MetricResult(score=0.0, feedback="Wrong: expected 5.")


def ops(output):
    return sorted(v.op.name for v in Graph.from_output(output).variables if v.op)


def run(coro):
    with Tape("ex-0"):
        return asyncio.run(coro)


def build(kind):
    """(module, output) for each module, with the engine each needs."""
    if kind == "self_consistency":
        m = SelfConsistency("cot", k=4, threshold=0.75)  # 2 of 4 agree: below it, so the greedy call is made
        return m, run(m.acall(scripted(["Answer: 5", "Answer: 6", "Answer: 5", "Answer: 7", "Answer: 5"]), QUESTION))
    if kind == "rag":
        m = MultiHopRAG("rag", hops=2, top_k=1)
        passages = ["«Two» two is a number", "«Three» three plus two is five", "«Cats» cats purr"]
        return m, run(m.acall(sim(), QUESTION, passages))
    if kind == "sample_filter":
        prompt = 'def add(a, b):\n    """Add."""\n'
        good, bad = prompt + "    return a + b\n", prompt + "    return a - b\n"
        m = SampleAndFilter("coder", n=3)
        eng = scripted([f"```python\n{good}```", f"```python\n{bad}```", f"```python\n{good}```"])
        return m, run(m.acall(eng, prompt, "def check(candidate):\n    assert candidate(2, 2) == 4\n", "add"))
    if kind == "tool_agent":
        m = ToolAgent([Tool("calc", "calc[expr]: arithmetic", lambda s: str(eval(s, {}))),
                       Tool("search", "search[q]: looks text up", lambda s: "nothing found")], max_steps=3)
        eng = scripted(["Thought: look it up\nAction: search[2 plus 3]", "Thought: compute\nAction: calc[2+4]",
                        "Thought: done\nAnswer: 6"])
        return m, run(m.acall(eng, QUESTION))
    if kind == "symbolic":
        m = SymbolicChecker("solver", retries=2)
        return m, run(m.acall(scripted(["Answer: 4", "Answer: x = 5"]), "Solve 3x + 1 = 16", "3*x + 1 = 16"))
    if kind == "cascade":
        m = Cascade(["small", "large"], threshold=0.9, probes=3)
        eng = scripted(["Answer: 4", "Answer: 5", "Answer: 4", "Answer: 5"])
        tiers = {"small": Tier("small", eng, "small-model", 1.0, 1.0), "large": Tier("large", eng, "large-model", 10.0, 10.0)}
        return m, run(m.acall(tiers, QUESTION))
    if kind == "medprompt":
        pool = [{"id": "t1", "input": "What is 1 plus 1?", "output": "Answer: 2"},
                {"id": "t2", "input": "Name a cat.", "output": "Answer: Tom"}]
        m = Medprompt("mp", pool=pool, allowed_ids=["t1", "t2"], shots=1, ensemble=3)
        return m, run(m.acall(scripted(["Answer: A", "Answer: B", "Answer: C"]), QUESTION, ["5", "6", "7"]))
    raise AssertionError(kind)


KINDS = ["self_consistency", "rag", "sample_filter", "tool_agent", "symbolic", "cascade", "medprompt"]


@pytest.fixture(scope="module")
def built():
    return {kind: build(kind) for kind in KINDS}


def test_self_consistency_records_k_samples_a_greedy_fallback_and_a_vote(built):
    m, out = built["self_consistency"]
    assert ops(out) == ["cot.greedy"] + ["cot.sample"] * 4 + ["cot.vote"]
    samples = [v for v in Graph.from_output(out).variables if v.op and v.op.name == "cot.sample"]
    assert len({v.op.prompt[0]["content"] for v in samples}) == 1  # one instruction; distinct requests by sample_index
    assert "greedy answer is used" in out.value and out.value.splitlines()[-1].startswith("Answer:")


def test_self_consistency_sends_k_distinct_requests_and_no_greedy_when_they_agree():
    backend = ScriptedBackend(reply_fn=lambda r: "Answer: 5")
    eng = build_engine({"provider": "scripted", "cache": {"mode": "off"}}, backend=backend)
    m = SelfConsistency("cot", k=3, threshold=0.5)
    out = asyncio.run(m.acall(eng, QUESTION))
    assert sorted(r.sample_index for r in backend.requests) == [1, 2, 3]
    assert all(r.temperature > 0 for r in backend.requests) and "cot.greedy" not in ops(out)
    assert out.value.endswith("Answer: 5")


def test_multihop_rag_records_query_writers_retrievals_and_reader(built):
    m, out = built["rag"]
    names = ops(out)
    assert names.count("rag.retrieve") == 2 and {"rag.query", "rag.followup", "rag.reader"} <= set(names)
    hops = [v for v in Graph.from_output(out).variables if v.op and v.op.name == "rag.retrieve"]
    assert all(len(h.value.splitlines()) == 1 for h in hops)  # top_k = 1 passage per hop
    assert hops[0].value != hops[1].value  # the second hop skips what the first found


def test_sample_filter_runs_each_program_and_submits_the_largest_passing_cluster(built):
    m, out = built["sample_filter"]
    names = ops(out)
    assert names.count("coder.sample") == 3 and names.count("coder.run") == 3 and "coder.select" in names
    assert "return a + b" in out.value
    assert "2 of 3 programs pass" in out.op.description


def test_tool_agent_records_each_step_and_tool_call(built):
    m, out = built["tool_agent"]
    names = ops(out)
    assert names.count("agent.step") == 3 and names.count("agent.tool") == 2
    first_step = [v for v in Graph.from_output(out).variables if v.op and v.op.name == "agent.step"
                  and "search[" in str(v.value)]
    assert first_step, "the step that chose the search tool is a node the answer depends on"


def test_tool_agent_stops_at_the_step_limit():
    m = ToolAgent([Tool("calc", "calc[expr]", lambda s: "1")], max_steps=2)
    out = asyncio.run(m.acall(scripted(["Action: calc[1]"] * 2), QUESTION))
    assert out.op.name == "agent.limit" and ops(out).count("agent.step") == 2


def test_symbolic_checker_retries_with_the_checkers_message(built):
    m, out = built["symbolic"]
    names = ops(out)
    assert names.count("solver.check") == 2 and names.count("solver.retry") == 1 and "solver.result" in names
    retry = next(v for v in Graph.from_output(out).variables if v.op and v.op.name == "solver.retry")
    assert "is not a solution" in retry.op.prompt[-1]["content"]  # the checker's message reached the retry
    assert "accepted" in out.value


def test_cascade_escalates_on_low_agreement_and_counts_cost(built):
    m, out = built["cascade"]
    assert ops(out).count("cascade.small") == 3 and ops(out).count("cascade.large") == 1
    assert out.value["escalated"] and out.value["tiers_called"] == ["small", "large"]
    assert out.value["cost_usd"] > 0


def test_medprompt_records_knn_shuffled_members_and_a_vote(built):
    m, out = built["medprompt"]
    assert ops(out) == ["mp.knn"] + ["mp.member"] * 3 + ["mp.vote"]
    members = [v for v in Graph.from_output(out).variables if v.op and v.op.name == "mp.member"]
    option_blocks = {v.op.prompt[-1]["content"].split("Options:")[-1] for v in members}
    assert len(option_blocks) > 1  # the members saw the options in different orders
    knn = next(v for v in Graph.from_output(out).variables if v.op and v.op.name == "mp.knn")
    assert "1 plus 1" in knn.value and "cat" not in knn.value  # the nearest demo, not the other one


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("credit", ["backprop", "trace"])
def test_every_declared_parameter_receives_credit(built, kind, credit):
    m, out = built[kind]
    loss = MetricLoss(wrong)(out, None)
    params = [p for p in Graph.from_output(loss).parameters()]
    declared = {f"{m.name}.{s.key}" for s in m.specs()}
    assert {p.id for p in params} == declared
    result = tc.backward(loss, credit=credit, engine=tc.engine("sim"))
    for pid in declared:
        if credit == "backprop":
            assert result.feedback.get(pid), f"{pid} got no feedback"
        else:
            assert result.kind == "trace" and pid in result.trace, f"{pid} is not in the trace"
