"""Credit strategies beyond backprop: semantic (neighbour-aware), trace, outcome and adaptive, on hand-built graphs."""
import ast
import asyncio
import dataclasses
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from credit.adaptive import AdaptiveCredit
from credit.backprop import Backprop
from credit.outcome import OutcomeCredit
from credit.semantic import SemanticBackprop
from credit.trace import TracePropagation, approx_tokens
from experiments.factory import build_credit
from textgrad_core.credit import PER_PARAMETER, SCORES, TRACE, CreditResult, ExampleTrace, ParameterFeedback
from textgrad_core.engines import ScriptedBackend, build_engine
from textgrad_core.engines.sim import RubricItem, SimWorld
from textgrad_core.errors import ConfigError
from textgrad_core.graph import Graph
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.ops import FormattedLLMCall, join, traced
from textgrad_core.variable import Parameter, Tape, Variable

ROOT = Path(__file__).resolve().parents[1]
LONG = "y" * 1000  # a long reasoning line: cut at the trace's value limit
BROKEN = "I am not sure how to count these."  # a reply without an answer line: parse_answer raises


def scripted(reply_fn=None):
    backend = ScriptedBackend(reply_fn=reply_fn)
    return build_engine({"provider": "scripted", "model": "m", "cache": {"enabled": False}}, backend=backend), backend


def forward_reply(request):
    if request.tag.startswith("credit:"):
        return f"edge feedback from {request.tag.rsplit(':', 1)[-1]}"
    return BROKEN if "broken" in request.user_text else f"{LONG}\nAnswer: 3"


@traced(output_role="normalized question")
def normalize(text: str) -> str:
    """Lower-cases the question."""
    return text.lower()


@traced(output_role="summary of the instruction")
def describe_instruction(text: str) -> str:
    """Summarizes the instruction for a log (its result never reaches the output)."""
    return f"instruction of {len(text)} characters"


@traced(output_role="parsed answer")
def parse_answer(response: str) -> str:
    """Takes the number after 'Answer:'."""
    if "Answer:" not in response:
        raise ValueError("no answer line in the response")
    return response.rsplit("Answer:", 1)[1].strip()


def exact_match(prediction, expected):
    """Exact match with the expected answer."""
    ok = str(prediction) == expected
    return MetricResult(score=float(ok), feedback=("Correct." if ok else f"Wrong: expected {expected}, got {prediction}."))


def make_params():
    return [Parameter(value="Count the objects.", role="system prompt of the solver", name="solver.instruction"),
            Parameter(value="Q: two apples? A: 2", role="few-shot demonstrations", name="solver.demos")]


async def forward(engine, params, example_id, question, expected="3"):
    """instruction + demos + normalize(question) -> LLM -> parse_answer -> metric loss; plus a dangling side op."""
    instruction, demos = params
    llm = FormattedLLMCall(engine, "{demos}\nQ: {question}", {"demos": "few-shot demonstrations", "question": "question"},
                           system_prompt=instruction, name="solver_llm")
    with Tape(example_id) as tape:
        q = Variable(question, role="question")
        describe_instruction(instruction)  # starts at a parameter but never reaches the output
        response = await llm.acall(demos=demos, question=normalize(q))
        output = parse_answer(response)
        loss = MetricLoss(exact_match)(output, expected)
    return ExampleTrace(example_id, output, loss, Graph(tape.variables + [output, loss]))


async def batch(engine, params):
    return [await forward(engine, params, "ex1", "How MANY Apples?"),
            await forward(engine, params, "ex2", "a broken QUESTION")]


def example_block(text, example_id):
    match = re.search(rf'<EXAMPLE id="{example_id}".*?</EXAMPLE>', text, re.DOTALL)
    assert match, f"no block for {example_id}"
    return match.group(0)


# ---- trace ---------------------------------------------------------------------------------------------------------
def test_trace_serializes_exactly_the_minimal_subgraph_with_zero_calls():
    async def go():
        engine, backend = scripted(forward_reply)
        params = make_params()
        traces = await batch(engine, params)
        before = len(backend.requests)
        result = await TracePropagation().assign(traces, params, engine)
        return traces, params, result, len(backend.requests) - before

    traces, params, result, calls = asyncio.run(go())
    text = result.trace
    assert calls == 0 and result.kind == TRACE and result.strategy == "trace"
    assert result.scores == {"ex1": 1.0, "ex2": 0.0}

    # Exactly the ops of the minimal subgraph, and as inputs only the outside values those ops read.
    for t in traces:
        block = example_block(text, t.example_id)
        sub = t.graph.minimal_subgraph(t.output, params)
        expected_ops = {v.id for v in sub.variables if not isinstance(v, Parameter)}
        expected_inputs = {i.id for v in sub.variables if v.op for i in v.inputs if i.id not in sub.g}
        assert set(re.findall(r"^(v\d+) = \w+\(", block, re.M)) == expected_ops
        assert set(re.findall(r"^(v\d+) = <input>", block, re.M)) == expected_inputs
        assert len(expected_ops) == 2 and len(expected_inputs) == 1  # solver_llm, parse_answer; the normalized question
        assert f"output: {t.output.id}" in block
    # The branch that reaches no parameter (the raw question and normalize) and the one that never reaches the
    # output (describe_instruction) are absent; the normalized question is shown by value only.
    for absent in ("How MANY Apples?", "a broken QUESTION", "normalize(", 'name="normalize"', "Lower-cases", "describe_instruction",
                   "instruction of 18 characters"):
        assert absent not in text
    assert "how many apples?" in example_block(text, "ex1") and "a broken question" in example_block(text, "ex2")

    # Parameters by id, whole, once; ops reference them by id; each op documented once.
    assert text.count('<PARAMETER id="solver.instruction"') == 1 and "Count the objects." in text
    assert text.count('<PARAMETER id="solver.demos"') == 1 and "Q: two apples? A: 2" in text
    assert "solver_llm(system_prompt=solver.instruction, demos=solver.demos, question=" in text
    assert text.count('<OP name="solver_llm"') == 1 and text.count('<OP name="parse_answer"') == 1
    assert "def parse_answer(response: str) -> str:" in text and "{demos}\nQ: {question}" in text

    # Within the token budget every value is shown whole (the end of a response is where its answer is).
    assert LONG + "\n  | Answer: 3" in text and "[cut:" not in text
    # Each parameter's block is published exactly, so an optimizer showing the value itself can leave it out.
    blocks = result.details["parameter_blocks"]
    assert set(blocks) == {"solver.instruction", "solver.demos"} and all(b in text for b in blocks.values())

    # The failed op's error in place: right after parse_answer's line in ex2, not in ex1.
    ex2 = example_block(text, "ex2")
    assert re.search(r"= parse_answer\(response=v\d+\)  # parsed answer\n  \| ERROR in parse_answer: .*\n"
                     r"  ! error in parse_answer: ValueError: no answer line in the response", ex2)
    assert "! error" not in example_block(text, "ex1")

    # Feedback and score per example.
    assert 'score="1"' in example_block(text, "ex1") and "Correct." in example_block(text, "ex1")
    assert 'score="0"' in ex2 and "The system failed before producing an answer: ValueError" in ex2

    assert "<FEEDBACK>" not in text  # optimizers wrap what they are given in <FEEDBACK>: no nesting
    assert result.details["trace_chars"] == len(text) and result.details["trace_tokens"] == approx_tokens(text)
    assert result.for_parameter(params[0]) == [ParameterFeedback("minibatch", text)]


def test_trace_value_limit_is_configurable_and_none_keeps_values_whole():
    async def go(limit):
        engine, _ = scripted(forward_reply)
        params = make_params()
        return (await TracePropagation(value_limit=limit).assign([await forward(engine, params, "ex1", "Q?")], params,
                                                                 engine)).trace

    cut = asyncio.run(go(50))
    # Head and tail kept around a visible mark: the last line (the answer) survives a cut.
    assert "  | " + "y" * 25 + "\n  | ...[cut: 960 characters of the middle]...\n  | " + "y" * 15 + "\n  | Answer: 3" in cut
    assert "y" * 26 not in cut
    whole = asyncio.run(go(None))
    assert LONG in whole and "[cut:" not in whole


def test_trace_of_an_output_no_parameter_reaches_keeps_only_feedback_and_score():
    engine, _ = scripted(forward_reply)
    with Tape("ex0") as tape:
        out = normalize(Variable("Constant INPUT", role="question"))
        loss = MetricLoss(exact_match)(out, "x")
    trace = ExampleTrace("ex0", out, loss, Graph(tape.variables + [out, loss]))
    text = asyncio.run(TracePropagation().assign([trace], make_params(), engine)).trace
    block = example_block(text, "ex0")
    assert "no trainable parameter influences" in block and "Wrong: expected x" in block
    assert "Constant INPUT" not in text and "<PARAMETER id=" not in text and "<OP name=" not in text
    assert not re.search(r"^v\d+ = ", block, re.M)


# ---- semantic ------------------------------------------------------------------------------------------------------
def edge_prompt_to_instruction(strategy):
    async def go():
        engine, backend = scripted(forward_reply)
        params = make_params()
        trace = await forward(engine, params, "ex1", "How MANY Apples?", expected="4")  # wrong: feedback flows
        before = len(backend.requests)
        result = await strategy.assign([trace], params, engine)
        credit = backend.requests[before:]
        return result, [r.user_text for r in credit]

    result, prompts = asyncio.run(go())
    [prompt] = [p for p in prompts if '<TARGET id="solver.instruction" />' in p]
    return result, prompts, prompt


def test_semantic_edge_prompt_shows_sibling_inputs_with_values_and_trainable_flags():
    result, prompts, prompt = edge_prompt_to_instruction(SemanticBackprop())
    sem_calls = len(prompts)
    assert result.strategy == "semantic" and result.kind == PER_PARAMETER
    assert set(result.feedback) == {"solver.instruction", "solver.demos"}
    siblings = prompt[prompt.index("<SIBLINGS>"):prompt.index("</SIBLINGS>")]
    assert '<SIBLING field="demos" id="solver.demos" role="few-shot demonstrations" trainable="true">\nQ: two apples? A: 2\n' in siblings
    assert re.search(r'<SIBLING field="question" id="v\d+" role="normalized question" trainable="false">\nhow many apples\?\n',
                     siblings)
    assert 'field="system_prompt"' not in siblings  # the target is not its own sibling
    # The target is the one <INPUT> of the prompt, before the siblings.
    assert prompt.count("<INPUT ") == 1 and prompt.index("<INPUT field=\"system_prompt\"") < prompt.index("<SIBLINGS>")

    _, bp_prompts, bp_prompt = edge_prompt_to_instruction(Backprop())
    assert "<SIBLING" not in bp_prompt and 'trainable="false"' not in bp_prompt
    # Semantic = backprop's prompt plus the siblings section (ids differ between the two recordings), same calls.
    def without_siblings(p):
        p = re.sub(r"\nThe same operation has these other inputs.*?</SIBLINGS>\n", "", p, flags=re.DOTALL)
        p = p.replace("[the value of input 'demos', shown in SIBLINGS below]", "Q: two apples? A: 2")
        return re.sub(r"\bv\d+\b", "vN", p)
    assert without_siblings(prompt) == without_siblings(bp_prompt)
    assert sem_calls == len(bp_prompts) == 3  # parse_answer -> llm output; solver_llm -> instruction, demos


def test_simulator_reads_the_target_input_of_a_semantic_prompt_and_credits_siblings():
    world = SimWorld(task="t", answers={}, rubric=[
        RubricItem(key="enumerate", guidance="Enumerate the objects.", keywords=["enumerate"], hint="HINT-ENUMERATE"),
        RubricItem(key="check", guidance="Double-check the total.", keywords=["double-check"], hint="HINT-CHECK")])

    def credit_for_instruction(instruction, demos):
        async def go():
            fwd, _ = scripted(lambda r: "A lot.")
            sim = build_engine({"provider": "sim", "model": "sim", "cache": {"enabled": False}}, sim_world=world)
            params = [Parameter(value=instruction, role="system prompt", name="solver.instruction"),
                      Parameter(value=demos, role="few-shot demonstrations", name="solver.demos")]
            llm = FormattedLLMCall(fwd, "{demos}\nQ: {question}", {"demos": "demos", "question": "question"},
                                   system_prompt=params[0], name="solver_llm")
            with Tape("e") as tape:
                out = await llm.acall(demos=params[1], question="How many?")
                loss = MetricLoss(exact_match)(out, "3")
            trace = ExampleTrace("e", out, loss, Graph(tape.variables + [out, loss]))
            return (await SemanticBackprop().assign([trace], params, sim)).feedback["solver.instruction"][0].text
        return asyncio.run(go())

    # The sibling demos already enumerate: only the double-check guidance is asked of the instruction.
    assert "HINT-CHECK" in credit_for_instruction("Count.", "Always enumerate.")
    # The target (not the sibling, which lacks it) is read: with the sibling's help nothing is missing.
    assert "already contains all the guidance" in credit_for_instruction("Double-check it.", "Always enumerate.")


# ---- outcome -------------------------------------------------------------------------------------------------------
def test_outcome_returns_only_scores_and_makes_no_calls():
    async def go():
        engine, backend = scripted(forward_reply)
        params = make_params()
        traces = await batch(engine, params)
        before = len(backend.requests)
        result = await OutcomeCredit().assign(traces, params, engine)
        return traces, params, result, len(backend.requests) - before

    traces, params, result, calls = asyncio.run(go())
    assert calls == 0 and result.kind == SCORES and result.strategy == "outcome"
    assert result.scores == {"ex1": 1.0, "ex2": 0.0} and result.details["mean_score"] == 0.5
    assert result.feedback == {} and result.trace is None
    everything = repr(dataclasses.asdict(result)) + repr([result.for_parameter(p) for p in params])
    for value in (LONG[:50], "Answer: 3", "how many apples?", "no answer line", "Correct.", "Wrong:", "ERROR"):
        assert value not in everything
    assert [f.text for f in result.for_parameter(params[0])] == ["The system scored 1.00 on this example.",
                                                                 "The system scored 0.00 on this example."]


# ---- adaptive ------------------------------------------------------------------------------------------------------
@traced(output_role="intermediate report")
def grow(text: str, step: int) -> str:
    """One step of a long agent loop: writes a long report."""
    return f"step {step}: " + "z" * 300


def chain_example(example_id, n_ops, params):
    """input + p1 -> n_ops traced steps (p2 joined in half way) -> output."""
    p1, p2 = params
    with Tape(example_id) as tape:
        v = join(p1, Variable(f"task of {example_id}", role="task"))
        for i in range(n_ops):
            v = grow(v, i)
            if i == n_ops // 2:
                v = join(v, p2)
        loss = MetricLoss(exact_match)(v, "done")
    return ExampleTrace(example_id, v, loss, Graph(tape.variables + [v, loss]))


def chain_params():
    return [Parameter(value="Plan the loop.", role="agent instruction", name="agent.plan"),
            Parameter(value="Use tools sparingly.", role="tool policy", name="agent.tools")]


def run_adaptive(strategy, traces, params):
    async def go():
        engine, backend = scripted(lambda r: "fix the step")
        return await strategy.assign(traces, params, engine), [r.user_text for r in backend.requests]
    return asyncio.run(go())


def test_adaptive_falls_back_per_example_when_the_trace_exceeds_the_budget():
    params = chain_params()
    big, small = chain_example("big", 300, params), chain_example("small", 3, params)
    result, prompts = run_adaptive(AdaptiveCredit(max_trace_tokens=6000), [big, small], params)

    assert result.kind == TRACE and result.strategy == "adaptive"
    assert result.details["strategy_by_example"] == {"big": "semantic", "small": "trace"}
    assert result.details["example_trace_tokens"]["big"] > 6000 >= result.details["trace_tokens"] > 0
    assert '<EXAMPLE id="small"' in result.trace and '<EXAMPLE id="big"' not in result.trace
    # One call per edge of the big example's minimal subgraph, none for the small one.
    assert len(prompts) == big.graph.minimal_subgraph(big.output, params).g.number_of_edges() > 300
    assert all("task of small" not in p for p in prompts) and any("<SIBLINGS>" in p for p in prompts)
    assert {pid: [f.example_id for f in items] for pid, items in result.feedback.items()} == \
        {"agent.plan": ["big"], "agent.tools": ["big"]}
    # Each parameter gets the trace and its own fallback feedback.
    for p in params:
        got = result.for_parameter(p)
        assert got[0] == ParameterFeedback("minibatch", result.trace)
        assert [f.example_id for f in got[1:]] == ["big"] and got[1].text == "fix the step"
    assert result.scores == {"big": 0.0, "small": 0.0}


def test_adaptive_with_a_large_budget_is_all_trace_and_makes_no_calls():
    params = chain_params()
    traces = [chain_example("big", 300, params), chain_example("small", 3, params)]
    result, prompts = run_adaptive(AdaptiveCredit(max_trace_tokens=10**7), traces, params)
    assert prompts == [] and result.feedback == {}
    assert result.details["strategy_by_example"] == {"big": "trace", "small": "trace"}
    assert result.trace == asyncio.run(TracePropagation(value_limit=400, prompt_token_budget=None).assign(traces, params, None)).trace


def test_adaptive_backprop_fallback_and_nothing_fits():
    params = chain_params()
    traces = [chain_example("a", 2, params)]
    result, prompts = run_adaptive(AdaptiveCredit(max_trace_tokens=1, fallback="backprop"), traces, params)
    assert result.trace is None and result.details["strategy_by_example"] == {"a": "backprop"}
    assert prompts and all("<SIBLINGS>" not in p for p in prompts)
    assert [f.text for f in result.for_parameter(params[0])] == ["fix the step"]
    with pytest.raises(ConfigError, match="unknown fallback 'nope'"):
        AdaptiveCredit(fallback="nope")
    with pytest.raises(ConfigError, match="invalid fallback_options"):
        AdaptiveCredit(fallback_options={"bogus": 1})


# ---- the result protocol, configs, layering --------------------------------------------------------------------------
def test_for_parameter_keeps_per_parameter_trace_and_scores_behaviours():
    p = Parameter(value="x", role="r", name="p")
    fb = {"p": [ParameterFeedback("e1", "more detail")]}
    assert CreditResult("s", PER_PARAMETER, feedback=fb).for_parameter(p) == fb["p"]
    assert CreditResult("s", PER_PARAMETER).for_parameter(p) == []
    assert CreditResult("s", TRACE, trace="T").for_parameter(p) == [ParameterFeedback("minibatch", "T")]
    assert CreditResult("s", TRACE, trace="T", feedback=fb).for_parameter(p) == [ParameterFeedback("minibatch", "T")] + fb["p"]
    assert CreditResult("s", TRACE, feedback=fb).for_parameter(p) == fb["p"]
    assert CreditResult("s", TRACE, scores={"e": 0.5}).for_parameter(p)[0].text == "The system scored 0.50 on this example."


@pytest.mark.parametrize("name,cls", [("semantic", SemanticBackprop), ("trace", TracePropagation),
                                      ("outcome", OutcomeCredit), ("adaptive", AdaptiveCredit), ("backprop", Backprop)])
def test_credit_configs_build_their_strategy(name, cls):
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "credit" / f"{name}.yaml"))
    strategy = build_credit(cfg)
    assert type(strategy) is cls and strategy.name == name


def test_credit_package_imports_only_textgrad_core_and_itself():
    for path in (ROOT / "credit").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in {"tasks", "experiments"}, f"{path.name} imports {name}"
