"""The optimizer sees what it needs: values whole up to a token budget, cut head and tail past it (the answer at the
end survives); TGD shows each feedback's example (input, system output) when asked; no value is sent twice in an edge or joint
prompt; backprop skips perfect examples by default and may answer "no change is needed"."""
from __future__ import annotations

import asyncio
import json

from credit import prompts as credit_prompts
from credit.backprop import Backprop
from credit.semantic import SemanticBackprop
from credit.trace import TracePropagation
from textgrad_core.credit import ExampleTrace
from textgrad_core.engines import ScriptedBackend, build_engine
from textgrad_core.graph import Graph
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.ops import FormattedLLMCall, traced
from textgrad_core.optimizers import TGD, JointUpdate
from textgrad_core.optimizers.budget import approx_tokens, clip_middle, shared_cap
from textgrad_core.variable import Parameter, Tape, Variable

INSTRUCTION = "Count every object in the question, one by one, then give the total on the last line."
DEMOS = "Q: I have a pen, a book and two cups on my desk. How many objects are there? A: pen, book, cup, cup: 4"
QUESTION = "I have a chair, two tables and a lamp in the living room, and a bed upstairs. How many objects do I have?"
ANSWER_LINE = "Answer: 4"


def engine(reply_fn):
    backend = ScriptedBackend(reply_fn=reply_fn)
    return build_engine({"provider": "scripted", "model": "m", "cache": {"enabled": False}}, backend=backend), backend


@traced(output_role="parsed answer")
def parse_answer(response: str) -> str:
    """Takes the text after the last 'Answer:'."""
    return response.rsplit("Answer:", 1)[-1].strip()


def exact(prediction, expected):
    """Exact match."""
    ok = str(prediction) == expected
    return MetricResult(score=float(ok), feedback="Correct." if ok else f"Wrong: expected {expected}, got {prediction}.")


def forward_reply(reasoning_chars: int):
    def reply(request):
        if request.tag.startswith("credit:"):
            return "Ask for an explicit list of the objects."
        if request.tag.startswith("optimizer:"):
            return "<NEW_VALUE>\nCount the objects and list them.\n</NEW_VALUE>"
        return "r" * reasoning_chars + "\n" + ANSWER_LINE
    return reply


def run_example(reasoning_chars: int = 100, expected: str = "5", example_id: str = "ex1"):
    eng, backend = engine(forward_reply(reasoning_chars))
    params = [Parameter(value=INSTRUCTION, role="system prompt of the solver", name="solver.instruction"),
              Parameter(value=DEMOS, role="few-shot demonstrations", name="solver.demos")]
    llm = FormattedLLMCall(eng, "{demos}\nQ: {question}", {"demos": "demonstrations", "question": "question"},
                           system_prompt=params[0], name="solver_llm")

    async def go():
        with Tape(example_id) as tape:
            response = await llm.acall(demos=params[1], question=Variable(QUESTION, role="question"))
            output = parse_answer(response)
            loss = MetricLoss(exact)(output, expected)
        return ExampleTrace(example_id, output, loss, Graph(tape.variables + [output, loss]))

    return eng, backend, params, asyncio.run(go())


def credit_prompts_of(strategy, reasoning_chars: int = 100):
    eng, backend, params, trace = run_example(reasoning_chars)
    before = len(backend.requests)
    result = asyncio.run(strategy.assign([trace], params, eng))
    return result, {r.user_text.split('<TARGET id="')[1].split('"')[0]: r.user_text for r in backend.requests[before:]}, params


# ---- budget helpers ---------------------------------------------------------------------------------------------
def test_clip_middle_keeps_head_and_tail_with_a_mark_and_shared_cap_waterfills():
    text = "HEAD " + "m" * 1000 + " " + ANSWER_LINE
    cut = clip_middle(text, 100)
    assert cut.startswith("HEAD ") and cut.endswith(ANSWER_LINE) and "[cut: 915 characters of the middle]" in cut
    assert clip_middle(text, None) == text and clip_middle("short", 100) == "short"
    assert shared_cap([10, 20, 30], 100) is None
    assert shared_cap([10, 1000, 1000], 1010, floor=1) == 500  # short values stay whole, long ones share the rest
    assert shared_cap([10, 1000, 1000], 50) == 200  # never below the floor


# ---- backprop edge prompts ----------------------------------------------------------------------------------------
def test_backprop_edge_prompt_holds_the_target_value_once():
    for strategy in (Backprop(), SemanticBackprop()):
        _, by_target, _ = credit_prompts_of(strategy)
        prompt = by_target["solver.instruction"]
        assert prompt.count(INSTRUCTION) == 1, strategy.name  # in INPUTS, not again in the quoted prompt
        assert "[the value of input 'system_prompt', shown in INPUTS below]" in prompt
        demos_count = by_target["solver.demos"].count(DEMOS)
        assert demos_count == 1, strategy.name
        if strategy.name == "semantic":  # the sibling is shown once, in SIBLINGS
            assert prompt.count(DEMOS) == 1 and "[the value of input 'demos', shown in SIBLINGS below]" in prompt
            assert prompt.count(QUESTION) == 1


def test_edge_prompt_within_budget_keeps_the_answer_line_of_a_long_output():
    result, by_target, _ = credit_prompts_of(Backprop(prompt_token_budget=2000), reasoning_chars=200_000)
    prompt = by_target["v1"] if "v1" in by_target else next(p for t, p in by_target.items() if "solver." not in t)
    assert approx_tokens(prompt) <= 2100
    assert ANSWER_LINE in prompt and "characters of the middle]" in prompt
    whole, _, _ = credit_prompts_of(Backprop(prompt_token_budget=None), reasoning_chars=200_000)
    assert whole.feedback  # without a budget the call still happens, whole


def test_backprop_system_prompt_allows_no_change_and_perfect_examples_are_skipped_by_default():
    assert "no change is needed" in credit_prompts.BACKPROP_SYSTEM
    eng, backend, params, trace = run_example(expected="4")  # right answer: score 1
    before = len(backend.requests)
    result = asyncio.run(Backprop().assign([trace], params, eng))
    assert len(backend.requests) == before and result.details["skipped_examples"] == ["ex1"]
    result = asyncio.run(Backprop(skip_perfect=False).assign([trace], params, eng))
    assert len(backend.requests) > before


# ---- trace ------------------------------------------------------------------------------------------------------------
def test_trace_shows_values_whole_within_budget_and_cuts_head_and_tail_past_it():
    eng, _, params, trace = run_example(reasoning_chars=3000)
    whole = asyncio.run(TracePropagation().assign([trace], params, eng))
    assert "r" * 3000 in whole.trace and "[cut:" not in whole.trace and whole.details["value_cap"] is None
    eng, _, params, trace = run_example(reasoning_chars=200_000)
    cut = asyncio.run(TracePropagation(prompt_token_budget=3000).assign([trace], params, eng))
    assert approx_tokens(cut.trace) <= 3100 and cut.details["value_cap"] is not None
    assert "  | " + ANSWER_LINE in cut.trace and "characters of the middle]" in cut.trace
    assert INSTRUCTION in cut.trace and DEMOS in cut.trace  # parameter values are never cut


# ---- joint -----------------------------------------------------------------------------------------------------------
def test_joint_prompt_holds_each_parameter_value_once():
    eng, backend, params, trace = run_example()
    credit = asyncio.run(TracePropagation().assign([trace], params, eng))
    assert credit.trace.count(INSTRUCTION) == 1  # the trace alone shows it once
    backend.reply_fn = lambda r: json.dumps({"reasoning": "r", "updates": {"solver.instruction": "List the objects."}})
    asyncio.run(JointUpdate().step(params, credit, eng, step=1))
    prompt = backend.requests[-1].user_text
    assert prompt.count(INSTRUCTION) == 1 and prompt.count(DEMOS) == 1  # in the JSON only
    assert "<PARAMETERS>" not in prompt  # every parameter is in the JSON: the trace's section is left out whole
    assert params[0].value == "List the objects."


# ---- TGD ------------------------------------------------------------------------------------------------------------
def test_tgd_shows_each_feedbacks_example_input_and_output_when_asked():
    eng, backend, params, trace = run_example()
    credit = asyncio.run(Backprop().assign([trace], params, eng))
    asyncio.run(TGD(example_context=True).step(params[:1], credit, eng, step=1))
    prompt = backend.requests[-1].user_text
    context = prompt.split("<EXAMPLE_CONTEXT>")[1].split("</EXAMPLE_CONTEXT>")[0]
    assert '<EXAMPLE id="ex1">' in context and QUESTION in context and "<SYSTEM_OUTPUT>\n4\n</SYSTEM_OUTPUT>" in context
    assert prompt.count(INSTRUCTION) == 1
    eng, backend, params, trace = run_example()
    credit = asyncio.run(Backprop().assign([trace], params, eng))
    asyncio.run(TGD().step(params[:1], credit, eng, step=1))  # off by default: it costs tokens in every update call
    assert "<EXAMPLE_CONTEXT>" not in backend.requests[-1].user_text


def test_tgd_prompt_stays_within_its_budget_with_the_value_whole():
    param = Parameter(value=INSTRUCTION, role="instruction", name="p")
    from textgrad_core.credit import CreditResult, ParameterFeedback

    long_fb = "Early detail. " + "x" * 100_000 + " The last sentence names the fix."
    credit = CreditResult("backprop", "per_parameter", feedback={"p": [ParameterFeedback("e1", long_fb)]},
                          details={"example_context": {"e1": {"input": "q" * 50_000, "output": "o" * 50_000 + ANSWER_LINE}}})
    prompt = TGD(prompt_token_budget=4000, example_context=True).prompt(param, credit.for_parameter(param), 1, credit)
    assert approx_tokens(prompt) <= 4100 and INSTRUCTION in prompt
    assert "The last sentence names the fix." in prompt and ANSWER_LINE in prompt and "characters of the middle]" in prompt
    # The same credit after two backward() calls (merged details) still finds the context.
    merged = CreditResult.merge([credit, CreditResult("backprop", "per_parameter")])
    assert "<EXAMPLE_CONTEXT>" in TGD(example_context=True).prompt(param, merged.for_parameter(param), 1, merged)
