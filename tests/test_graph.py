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


def _fields(p: Parameter) -> dict:
    """Every field of a parameter that a rebuilt one must equal (validators by kind and settings; a function has no
    JSON form, so it is compared apart)."""
    return {"value": p.value, "role": p.role, "name": p.name, "kind": p.kind, "constraints": p.constraints,
            "choices": p.choices, "allowed_ids": p.allowed_ids, "pool": p.pool, "feedback": p.feedback,
            "history": [(h.version, h.value, h.step, h.reason, h.ts) for h in p.history],
            "validators": [(type(v).__name__, v.name, v.describe(p)) for v in p.validators
                           if type(v).__name__ != "FunctionValidator"]}


def no_todo(value):
    """Must not contain TODO."""
    return "contains TODO" if "TODO" in str(value) else None


def test_json_saves_and_restores_every_parameter_field_of_every_kind():
    pool = [{"id": "t1", "input": "2+2", "output": "4"}, {"id": "t2", "input": "3+3", "output": "6"}]
    params = [
        Parameter(value="Answer briefly.", role="instruction", name="instr", constraints=["one sentence"],
                  validators=[{"pattern": "brief", "description": "it must say brief"}, {"max_length": 400}, no_todo]),
        Parameter(value="def f(x):\n    return x\n", role="code", name="code", kind="code", validators=[{"defines": "f"}]),
        Parameter(value=0.5, role="temperature", name="temp", kind="number", validators=[{"range": [0, 1], "integer": False}]),
        Parameter(value="small", role="model", name="model", kind="choice", choices=["small", "large", 3]),
        Parameter(value=[pool[0]], role="demos", name="demos", kind="demos", pool=pool),
        Parameter(value=[], role="fixed demos", name="fixed", kind="demos", allowed_ids=["t1", "t9"]),
    ]
    params[0].update("Answer briefly and exactly.", step=1)
    params[0].revert_to(0, step=2)
    params[3].update("large", step=1)
    with Tape("ex7") as tape:
        out = join(*[Variable(str(p.value), role=f"use of {p.name}") for p in params], Variable("q", role="question"))
    for p in params:  # make each parameter an input of the graph
        out.op.inputs.append((p.name, p))
    g = Graph(tape.variables + params + [out])
    data = json.loads(json.dumps(g.to_json()))
    again = Graph.from_json(data)
    assert again.to_json() == data
    for p in params:
        restored = again.var(p.id)
        assert isinstance(restored, Parameter) and restored is not p
        assert _fields(restored) == _fields(p), p.name
    # the function validator has no JSON form: it is named, not silently dropped
    node = next(n for n in data["nodes"] if n["id"] == "instr")
    assert node["unsaved_validators"] == ["FunctionValidator(no_todo)"]
    assert again.var("instr").rejection("brief " + "x" * 500).validator == "max_length"
    assert again.var("instr").rejection("TODO brief") is None  # the check that could not be saved is not there
    assert again.var("demos").rejection([{"id": "v1", "input": "a", "output": "b"}]).validator == "demos"
    assert again.var("model").rejection("medium").validator == "choice"
    assert again.var(out.id).example_id == "ex7"
    short = g.to_json(history=False)  # a per-step log need not repeat every past version
    assert all("history" not in n for n in short["nodes"]) and Graph.from_json(short).to_json(history=False) == short
    assert Graph.from_json(short).var("instr").history[0].value == params[0].value


def test_from_json_of_something_else_is_one_config_error():
    import pytest
    from textgrad_core.errors import ConfigError

    for bad in ("not json", {"nodes": [{"id": "v0"}]}, {"format": "x"}):
        with pytest.raises(ConfigError, match="Graph.to_json"):
            Graph.from_json(bad)
