"""No value is sent twice in one prompt: every edge prompt (backprop, semantic), the trace, the joint prompt and the TGD
prompt (with its example context on) of a system built to repeat itself (two examples with the same response, an op
that passes its input through unchanged, a long question next to long demos) holds each value at most once, and the
references that replace a repeat say where the value is."""
from __future__ import annotations

import asyncio
import json

import pytest

from credit import prompts as credit_prompts
from credit.backprop import MIN_DEDUP_CHARS, Backprop
from credit.semantic import SemanticBackprop
from credit.trace import TracePropagation
from textgrad_core import prompts
from textgrad_core.credit import CreditResult, ExampleTrace, ParameterFeedback
from textgrad_core.engines import ScriptedBackend, build_engine
from textgrad_core.graph import Graph
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.ops import FormattedLLMCall, traced
from textgrad_core.optimizers import TGD, JointUpdate
from textgrad_core.optimizers.context import example_contexts
from textgrad_core.variable import Parameter, Tape, Variable

INSTRUCTION = "Count every object in the question, one by one, then give the total on the last line as 'Answer: N'."
DEMOS = "Q: I have a pen, a book and two cups on my desk. How many objects are there?\nA: pen, book, cup, cup\nAnswer: 4"
QUESTIONS = ["I have a chair, two tables and a lamp in the living room, and a bed upstairs. How many objects do I have?",
             "There are three apples, a pear and two plums in the bowl on the kitchen table. How many fruits are there?"]
# Every example gets the same response: a trace of the batch would show it once per example without deduplication.
RESPONSE = "Let me list them one by one and count each of them exactly once before I answer.\nAnswer: 4"


@traced(output_role="the response, checked")
def checked(response: str) -> str:
    """Returns the response unchanged when it has an answer line (an op whose output equals its input)."""
    return response if "Answer:" in response else response + "\nAnswer: ?"


def reply(request):
    if request.tag.startswith("credit:"):
        return "Ask for an explicit list."
    if request.tag.startswith("optimizer:"):
        if "<JOINT_UPDATE>" in request.user_text:
            return json.dumps({"reasoning": "r", "updates": {"solver.instruction": "List the objects, then count."}})
        return "<NEW_VALUE>\nList the objects, then count.\n</NEW_VALUE>"
    return RESPONSE


def wrong(prediction, expected):
    """Always wrong, so every example sends feedback."""
    return MetricResult(score=0.0, feedback=f"Wrong: expected {expected}.")


def run_batch():
    backend = ScriptedBackend(reply_fn=reply)
    eng = build_engine({"provider": "scripted", "model": "m", "cache": {"enabled": False}}, backend=backend)
    params = [Parameter(value=INSTRUCTION, role="system prompt of the solver", name="solver.instruction"),
              Parameter(value=DEMOS, role="few-shot demonstrations", name="solver.demos")]
    llm = FormattedLLMCall(eng, "{demos}\nQ: {question}", {"demos": "demonstrations", "question": "question"},
                           system_prompt=params[0], name="solver_llm")

    async def one(i: int) -> ExampleTrace:
        with Tape(f"ex{i}") as tape:
            response = await llm.acall(demos=params[1], question=Variable(QUESTIONS[i], role="question"))
            output = checked(response)
            loss = MetricLoss(wrong)(output, "5")
        return ExampleTrace(f"ex{i}", output, loss, Graph(tape.variables + [output, loss]))

    traces = [asyncio.run(one(i)) for i in range(len(QUESTIONS))]
    return eng, backend, params, traces


def values_of(traces) -> set[str]:
    """Every value of every recorded variable long enough to be deduplicated (shorter ones may match by accident)."""
    return {str(v.value) for t in traces for v in t.graph.topological_order() if len(str(v.value)) >= MIN_DEDUP_CHARS}


def occurrences(text: str, value: str) -> int:
    """How often `value` is in `text`: as is, JSON-escaped (a joint prompt's JSON) or as trace value lines."""
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1],
             "\n".join(credit_prompts.TRACE_VALUE_PREFIX + line for line in value.split("\n"))}
    count = sum(text.count(f) for f in forms)
    # A single-line value is inside its own trace-line form: counted once, not twice.
    return count - (text.count(credit_prompts.TRACE_VALUE_PREFIX + value) if "\n" not in value else 0)


def assert_each_value_once(text: str, values: set[str], where: str) -> None:
    twice = {v[:40]: occurrences(text, v) for v in values if occurrences(text, v) > 1}
    assert not twice, f"{where}: values sent more than once: {twice}"


def request_text(request) -> str:
    return "\n".join(m.content for m in request.messages)


def test_the_system_under_test_repeats_itself():
    _, _, _, traces = run_batch()
    assert all(str(t.output.value) == RESPONSE for t in traces)  # both examples, and the pass-through op, say RESPONSE
    assert {INSTRUCTION, DEMOS, RESPONSE, *QUESTIONS} <= values_of(traces)


@pytest.mark.parametrize("strategy", [Backprop(), SemanticBackprop()], ids=["backprop", "semantic"])
def test_edge_prompts_hold_each_value_once(strategy):
    eng, backend, params, traces = run_batch()
    before = len(backend.requests)
    asyncio.run(strategy.assign(traces, params, eng))
    edge_prompts = [request_text(r) for r in backend.requests[before:]]
    assert len(edge_prompts) == 2 * 3  # per example: the check's input, and the response's instruction and demos
    for text in edge_prompts:
        assert_each_value_once(text, values_of(traces), strategy.name)
    # The pass-through op's edge: its output equals its input, shown once and referred to.
    passthrough = [t for t in edge_prompts if '<OPERATION name="checked"' in t]
    assert passthrough and all(credit_prompts.SAME_AS_INPUT.format(field="response") in t for t in passthrough)
    assert all(t.count(RESPONSE) == 1 for t in passthrough)


def assert_joint_prompt_shows_each_value_once(eng, backend, params, traces, credit, where: str) -> None:
    """One joint update from `credit`: its prompt holds each value once and no trace PARAMETERS section."""
    asyncio.run(JointUpdate().step(params, credit, eng, step=1))
    joint = request_text(backend.requests[-1])
    assert_each_value_once(joint, values_of(traces), where)
    assert occurrences(joint, INSTRUCTION) == 1 and occurrences(joint, DEMOS) == 1 and "<PARAMETERS>" not in joint


def test_trace_and_joint_prompt_hold_each_value_once():
    eng, backend, params, traces = run_batch()
    credit = asyncio.run(TracePropagation().assign(traces, params, eng))
    assert_each_value_once(credit.trace, values_of(traces), "trace")
    first_line = RESPONSE.splitlines()[0]
    assert credit.trace.count(first_line) == 1  # 4 value lines show it: 2 examples x (response, checked)
    assert credit.trace.count(credit_prompts.TRACE_SAME_AS.format(id="v1", example_id="ex0")) == 3  # the other 3 refer to it
    assert_joint_prompt_shows_each_value_once(eng, backend, params, traces, credit, "joint")


def test_adaptive_credit_and_joint_prompt_hold_each_value_once():
    """Adaptive credit publishes the trace's PARAMETERS section as trace does, so joint leaves it out there too."""
    from credit.adaptive import AdaptiveCredit

    eng, backend, params, traces = run_batch()
    credit = asyncio.run(AdaptiveCredit().assign(traces, params, eng))
    assert set(credit.details["strategy_by_example"].values()) == {"trace"}  # both examples fit the default budget
    assert_joint_prompt_shows_each_value_once(eng, backend, params, traces, credit, "adaptive+joint")


def test_a_budget_cut_trace_still_shows_each_value_once():
    eng, _, params, traces = run_batch()
    cut = asyncio.run(TracePropagation(prompt_token_budget=400).assign(traces, params, eng))
    assert cut.details["value_cap"] is not None
    for value in values_of(traces) - {INSTRUCTION, DEMOS}:  # parameter values are never cut
        assert cut.trace.count(value.splitlines()[0][:60]) <= 1, value[:40]


@pytest.mark.parametrize("credit_name", ["backprop", "trace"])
def test_tgd_prompt_with_example_context_holds_each_value_once(credit_name):
    eng, backend, params, traces = run_batch()
    strategy = Backprop() if credit_name == "backprop" else TracePropagation()
    credit = asyncio.run(strategy.assign(traces, params, eng))
    asyncio.run(TGD(example_context=True).step(params, credit, eng, step=1))
    tgd_prompts = [request_text(r) for r in backend.requests if r.tag.startswith("optimizer:tgd")]
    assert len(tgd_prompts) == 2
    for text in tgd_prompts:
        assert_each_value_once(text, values_of(traces), f"tgd after {credit_name}")
    if credit_name == "backprop":  # each example's question once; the shared output once, then a reference
        context = tgd_prompts[0].split("<EXAMPLE_CONTEXT>")[1]
        assert all(q in context for q in QUESTIONS) and context.count(RESPONSE) == 1
        assert prompts.CONTEXT_SHOWN_ELSEWHERE.format(where="the output of example ex0") in context


def test_example_context_already_in_the_prompt_is_left_out_or_referred_to():
    long_input, long_output = "the question " * 10, "the answer " * 10
    credit = CreditResult("backprop", "per_parameter",
                          details={"example_context": {"e1": {"input": long_input, "output": long_output},
                                                       "e2": {"input": "short", "output": long_output}}})
    # Both parts of e1 are in the feedback: e1 is left out; e2's output is referred to, its short input shown.
    got = example_contexts(credit, ["e1", "e2"], {"the feedback below": f"{long_input}\n{long_output}"})
    assert got == [("e2", "short", prompts.CONTEXT_SHOWN_ELSEWHERE.format(where="the feedback below"))]
    # Nothing shown elsewhere: e2's output equals e1's and becomes a reference to it.
    got = example_contexts(credit, ["e1", "e2"])
    assert got == [("e1", long_input, long_output),
                   ("e2", "short", prompts.CONTEXT_SHOWN_ELSEWHERE.format(where="the output of example e1"))]
    fb = [ParameterFeedback("e2", "needs a list")]
    param = Parameter(value="Count.", role="instruction", name="p")
    shown = TGD(example_context=True).prompt(param, fb, 1, credit)
    assert shown.count(long_output) == 1
