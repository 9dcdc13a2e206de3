"""Textual backpropagation on a chain and a diamond: exactly the expected per-edge requests, with the right context."""
import asyncio
import re

from credit.backprop import Backprop
from textgrad_core.credit import ExampleTrace
from textgrad_core.graph import Graph
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.ops import LLMCall, join, traced
from textgrad_core.variable import Parameter, Tape, Variable
from tests.scripted import scripted_engine

TARGET = re.compile(r'<TARGET id="([^"]+)"')


def credit_reply(request):
    target = TARGET.search(request.user_text).group(1)
    return f"FB-for-{target}"


def wrong_metric(prediction, example):
    """Always wrong, so every example sends feedback."""
    return MetricResult(score=0.0, feedback=f"LOSS-FEEDBACK-{example}")


@traced
def reformat(text: str) -> str:
    """Strips the text."""
    return text.strip()


@traced
def left(text: str) -> str:
    """Left half."""
    return text[: len(text) // 2]


@traced
def right(text: str) -> str:
    """Right half."""
    return text[len(text) // 2:]


def trace_of(example_id, tape, out):
    loss = MetricLoss(wrong_metric)(out, example_id)
    return ExampleTrace(example_id, out, loss, Graph(tape.variables + [out, loss]))


def chain(forward, instr, example_id):
    with Tape(example_id) as tape:
        q = Variable(f"question {example_id}", role="question")
        r1 = LLMCall(forward, instr, name="op1")(q)
        r2 = reformat(r1)
        out = LLMCall(forward, Variable("Judge fairly.", role="fixed system prompt"), name="op3")(r2)
    return trace_of(example_id, tape, out), (q, r1, r2, out)


def test_chain_of_three_ops_gets_one_call_per_edge_in_reverse_order():
    forward, _ = scripted_engine(reply_fn=lambda r: "forward reply")
    credit_engine, backend = scripted_engine(reply_fn=credit_reply)
    instr = Parameter(value="Answer the question.", role="instruction", name="instr")
    trace, (q, r1, r2, out) = chain(forward, instr, "ex1")
    result = asyncio.run(Backprop().assign([trace], [instr], credit_engine))

    targets = [TARGET.search(r.user_text).group(1) for r in backend.requests]
    assert targets == [r2.id, r1.id, instr.id]  # reverse topological order, nothing for q or the fixed prompt
    assert [r.tag for r in backend.requests] == ["credit:backprop:op3", "credit:backprop:reformat", "credit:backprop:op1"]
    first, second, third = (r.user_text for r in backend.requests)
    assert "LOSS-FEEDBACK-ex1" in first and "[system] Judge fairly." in first  # the exact prompt sent by op3
    assert f"FB-for-{r2.id}" in second and "def reformat" in second  # the function's source is shown
    assert f"FB-for-{r1.id}" in third and "a trainable parameter" in third and "role=\"instruction\"" in third
    assert result.feedback["instr"][0].example_id == "ex1"
    assert result.feedback["instr"][0].text == f"FB-for-{instr.id}"


def test_diamond_aggregates_each_successor_once_and_overlaps_independent_calls():
    forward, _ = scripted_engine(reply_fn=lambda r: "abcdef")
    credit_engine, backend = scripted_engine(reply_fn=credit_reply, delay=0.05)
    instr = Parameter(value="Say six letters.", role="instruction", name="instr")
    traces, nodes = [], {}
    for ex in ("ex1", "ex2"):
        with Tape(ex) as tape:
            a = LLMCall(forward, instr, name="opA")(Variable(f"q {ex}", role="question"))
            b, c = left(a), right(a)
            out = join(b, c)
        traces.append(trace_of(ex, tape, out))
        nodes[ex] = (a, b, c, out)
    result = asyncio.run(Backprop().assign(traces, [instr], credit_engine))

    assert len(backend.requests) == 2 * 5  # per example: out<-b, out<-c, b<-a, c<-a, a<-instr
    for ex, (a, b, c, out) in nodes.items():
        to_instr = [r.user_text for r in backend.requests if f'<TARGET id="{instr.id}"' in r.user_text and f"q {ex}" in r.user_text]
        assert len(to_instr) == 1
        prompt = to_instr[0]
        # a's feedback is aggregated from its two successors, each exactly once
        assert prompt.count(f"FB-for-{a.id}") == 2
        assert prompt.count(f'from="left ({b.id})"') == 1 and prompt.count(f'from="right ({c.id})"') == 1
        assert a.feedback and a.feedback[0].count("FB-for-") == 2
    assert sorted(f.example_id for f in result.feedback["instr"]) == ["ex1", "ex2"]  # minibatch keeps example ids
    assert backend.peak_in_flight >= 4  # both examples' independent edges ran at once


def test_skip_perfect_examples_makes_no_calls_for_them():
    forward, _ = scripted_engine(reply_fn=lambda r: "x")
    credit_engine, backend = scripted_engine(reply_fn=credit_reply)
    instr = Parameter(value="v", role="instruction", name="instr")
    trace, _ = chain(forward, instr, "ex1")
    trace.loss.score = 1.0
    result = asyncio.run(Backprop(skip_perfect=True).assign([trace], [instr], credit_engine))
    assert backend.requests == [] and result.feedback == {} and result.details["skipped_examples"] == ["ex1"]


def test_error_message_of_failed_op_reaches_the_feedback():
    forward, _ = scripted_engine(reply_fn=lambda r: "not a number")
    credit_engine, backend = scripted_engine(reply_fn=credit_reply)
    instr = Parameter(value="Reply with a number.", role="instruction", name="instr")

    @traced
    def to_int(text: str) -> int:
        """Parses an integer."""
        return int(text)

    with Tape("ex1") as tape:
        out = to_int(LLMCall(forward, instr)(Variable("q", role="question")))
    loss = MetricLoss(lambda p, e: MetricResult(score=1.0, feedback="unused"))(out, "ex1")
    assert loss.score == 0.0 and "invalid literal for int()" in loss.value
    trace = ExampleTrace("ex1", out, loss, Graph(tape.variables + [out, loss]))
    asyncio.run(Backprop().assign([trace], [instr], credit_engine))
    first = backend.requests[0].user_text
    assert "<ERROR>" in first and "ValueError: invalid literal for int()" in first
    assert "invalid literal for int()" in first.split("<FEEDBACK_ON_OUTPUT>")[1]
