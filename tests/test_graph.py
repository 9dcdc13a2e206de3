"""The recorded graph: tracing, context-local tapes, minimal subgraph, export round-trips, error nodes."""
import asyncio
import json

from textgrad_core.graph import Graph
from textgrad_core.ops import LLMCall, FormattedLLMCall, join, traced
from textgrad_core.variable import Parameter, Tape, Variable
from tests.scripted import scripted_engine


@traced
def shout(text: str) -> str:
    """Upper-cases the text."""
    return text.upper()


@traced
def explode(text: str) -> str:
    """Always fails."""
    raise ValueError(f"cannot handle {text!r}")


def build_branchy():
    """instr -> llm -> shout -> out ; a side branch (constant -> shout) joins in but reaches no parameter."""
    engine, _ = scripted_engine(reply_fn=lambda r: "answer")
    instr = Parameter(value="Be brief.", role="instruction", name="instr")
    with Tape("ex1") as tape:
        q = Variable("What is 2+2?", role="question")
        a = LLMCall(engine, instr)(q)
        loud = shout(a)
        side = shout(Variable("side note", role="note"))
        out = join(loud, side)
    return tape, instr, q, a, loud, side, out


def test_tape_records_ops_and_inputs():
    tape, instr, q, a, loud, side, out = build_branchy()
    g = Graph(tape.variables + [out])
    assert instr in g and q in g and out in g
    assert [v.id for v in a.inputs] == [instr.id, q.id]
    assert a.op.prompt[0] == {"role": "system", "content": "Be brief."}
    order = [v.id for v in g.topological_order()]
    assert order.index(instr.id) < order.index(a.id) < order.index(loud.id) < order.index(out.id)
    assert loud.op.source and "def shout" in loud.op.source and loud.op.description == "Upper-cases the text."


def test_minimal_subgraph_drops_branch_that_reaches_no_parameter():
    tape, instr, q, a, loud, side, out = build_branchy()
    sub = Graph(tape.variables).minimal_subgraph(out, [instr])
    assert {v.id for v in sub.variables} == {instr.id, a.id, loud.id, out.id}
    assert side.id not in sub.g and q.id not in sub.g


def test_json_round_trip_and_text_exports():
    tape, instr, *_, out = build_branchy()
    g = Graph(tape.variables)
    data = g.to_json()
    again = Graph.from_json(json.dumps(data))
    assert again.to_json() == data
    assert sorted(again.g.edges) == sorted(g.g.edges)
    dot, mermaid = g.to_dot(), g.to_mermaid()
    assert dot.startswith("digraph") and f'"{instr.id}" -> ' in dot
    assert mermaid.startswith("flowchart LR") and f"{instr.id}[[" in mermaid and " --> " in mermaid


def test_traced_exception_becomes_error_node():
    out = explode(Variable("x", role="input"))
    assert out.is_error and "ValueError: cannot handle 'x'" in out.op.error
    assert "ERROR in explode" in out.value


def test_formatted_call_records_each_field():
    engine, backend = scripted_engine(reply_fn=lambda r: "ok")
    call = FormattedLLMCall(engine, "Q: {question}\nC: {context}", {"question": "the question", "context": "the context"},
                            system_prompt=Parameter(value="sys", role="system prompt", name="sys"))
    out = call(question=Variable("q?", role="question"), context="ctx")
    assert [f for f, _ in out.op.inputs] == ["system_prompt", "question", "context"]
    assert backend.requests[0].user_text == "Q: q?\nC: ctx"


def test_concurrent_forward_passes_record_into_their_own_tapes():
    engine, _ = scripted_engine(reply_fn=lambda r: r.user_text[::-1], delay=0.01)
    instr = Parameter(value="Reverse.", role="instruction", name="instr")

    async def one(i: int):
        with Tape(f"ex{i}") as tape:
            out = await LLMCall(engine, instr).acall(Variable(f"q{i}", role="question"))
            shout(out)
        return tape

    async def main():
        return await asyncio.gather(*(one(i) for i in range(8)))

    tapes = asyncio.run(main())
    for i, tape in enumerate(tapes):
        values = [v.value for v in tape.variables]
        assert values == [f"q{i}", f"{i}q", f"{i}Q"]  # nothing of another pass leaked in


def test_sync_op_inside_running_event_loop():
    engine, _ = scripted_engine(reply_fn=lambda r: "fine")

    async def notebook_cell():
        return LLMCall(engine, "sys")("hello")  # the sync API, called where a loop is already running

    assert asyncio.run(notebook_cell()).value == "fine"
