"""Scale of the graph and of credit bookkeeping: each step grows n log n or better, asserted by counting operations.

No wall time is measured: every figure is a count of Python-level function calls (sys.setprofile) made by one step on
generated graphs of two sizes within one run, so a loaded machine cannot make these tests pass or fail. A quadratic
step (for instance one forward search per parameter) makes 4x the graph cost ~16x the calls; n log n is ~5x.
"""
import asyncio
import gc
import random
import sys

import networkx as nx
import pytest

from credit.backprop import Backprop, old_objects_frozen
from credit.semantic import SemanticBackprop
from credit.trace import TracePropagation
from textgrad_core.credit import ExampleTrace
from textgrad_core.graph import Graph
from textgrad_core.variable import Parameter, Tape, Variable
from benchmarks.scale import combine, generated_tape
from tests.scripted import scripted_engine

SMALL, LARGE = 400, 1600  # 4x
N_LOG_N = 4 * 1.25  # 4x the ops at n log n (log 1600 / log 400 = 1.23), with a little room; quadratic is ~16


def generated(n_ops: int, seed: int = 0) -> tuple[Graph, Tape, Variable, Variable, list[Parameter]]:
    """The benchmark's generated graph (benchmarks.scale.generated_tape), with its tape."""
    tape, output, loss, params = generated_tape(n_ops, seed)
    return Graph(tape.variables + [loss]), tape, output, loss, params


def calls(fn) -> tuple[int, object]:
    """(Python and C function calls made while `fn()` runs, its result)."""
    count = 0

    def hook(frame, event, arg):
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(hook)
    try:
        result = fn()
    finally:
        sys.setprofile(None)
    return count, result


def growth(step) -> float:
    """Calls of `step(graph, tape, output, loss, params)` at LARGE ops over those at SMALL ops."""
    small, _ = calls(lambda built=generated(SMALL): step(*built))
    large, _ = calls(lambda built=generated(LARGE): step(*built))
    return large / small


def _engine():
    return scripted_engine(reply_fn=lambda r: "Use more of the earlier values.", max_concurrency=64)[0]


STEPS = {
    "record": lambda g, tape, out, loss, params: Graph(tape.variables + [loss]),
    "minimal subgraph": lambda g, tape, out, loss, params: g.minimal_subgraph(out, params),
    "topological order": lambda g, tape, out, loss, params: g.topological_order(),
    "to_json": lambda g, tape, out, loss, params: g.to_json(),
    "backprop bookkeeping": lambda g, tape, out, loss, params: asyncio.run(
        Backprop().assign([ExampleTrace("e", out, loss, g)], params, _engine())),
    "semantic bookkeeping": lambda g, tape, out, loss, params: asyncio.run(
        SemanticBackprop().assign([ExampleTrace("e", out, loss, g)], params, _engine())),
    # unbounded: one pass at both sizes (a trace over its budget is serialized twice, at any size)
    "trace serialization": lambda g, tape, out, loss, params: asyncio.run(
        TracePropagation(value_limit=200, prompt_token_budget=None).assign([ExampleTrace("e", out, loss, g)], params, _engine())),
    "trace serialization over budget": lambda g, tape, out, loss, params: asyncio.run(
        TracePropagation(prompt_token_budget=2000).assign([ExampleTrace("e", out, loss, g)], params, _engine())),
}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_scale_step_grows_n_log_n_or_better(step):
    ratio = growth(STEPS[step])
    assert 3.0 < ratio < N_LOG_N, f"{step}: 4x the ops cost {ratio:.1f}x the calls"


def test_minimal_subgraph_does_one_search_not_one_per_parameter():
    """The same graph with 8x the parameters: the cut's work barely changes (one multi-source walk)."""
    g, tape, out, loss, params = generated(LARGE)
    few, sub_few = calls(lambda: g.minimal_subgraph(out, params[:4]))
    many, sub_many = calls(lambda: g.minimal_subgraph(out, params))
    assert len(params) >= 32 and many < 1.5 * few
    assert len(sub_many) >= len(sub_few)


def _reference_minimal(g: nx.DiGraph, output: str, sources: list[str]) -> set[str]:
    """The definition, one search per parameter: nodes on some path from a source to the output."""
    upstream = nx.ancestors(g, output) | {output}
    keep: set[str] = set()
    for s in sources:
        if s in upstream:
            keep |= (nx.descendants(g, s) | {s}) & upstream
    return keep


@pytest.mark.parametrize("seed", range(6))
def test_minimal_subgraph_and_order_match_their_definitions_on_random_dags(seed):
    rng = random.Random(seed)
    params = [Parameter(value=f"p{i}", role="setting", name=f"param{i}") for i in range(5)]
    with Tape("random") as tape:
        values: list[Variable] = [Variable(f"input {i}", role="input") for i in range(3)]
        for _ in range(120):
            pool = values + params
            inputs = rng.sample(pool, k=min(len(pool), rng.choice([1, 2, 3])))
            values.append(combine(inputs[0], inputs[-1]))
    g = Graph(tape.variables + params)
    for output in rng.sample(values, 8):
        chosen = rng.sample(params, 2)
        sub = g.minimal_subgraph(output, chosen)
        assert set(sub.g.nodes) == _reference_minimal(g.g, output.id, [p.id for p in chosen])
        assert set(sub.g.edges) == set(g.g.subgraph(sub.g.nodes).edges)
        # nodes and each node's successors keep the recorded order
        assert list(sub.g.nodes) == [n for n in g.g.nodes if n in sub.g]
        for n in sub.g.nodes:
            assert list(sub.g.successors(n)) == [s for s in g.g.successors(n) if s in sub.g]
    key = lambda n: n.rjust(12, "0")  # noqa: E731 - the order's documented key
    assert [v.id for v in g.topological_order()] == list(nx.lexicographical_topological_sort(g.g, key=key))


def test_minimal_subgraph_of_an_output_outside_the_graph_is_empty():
    g, tape, out, loss, params = generated(60)
    stranger = Variable("elsewhere", role="unrelated")
    assert len(g.minimal_subgraph(stranger, params)) == 0
    assert g.depends_on(stranger) == set()


def test_backprop_leaves_no_freeze_behind_and_respects_the_programs_own(monkeypatch):
    g, tape, out, loss, params = generated(200)
    trace = ExampleTrace("e", out, loss, g)
    assert gc.get_freeze_count() == 0
    result = asyncio.run(Backprop().assign([trace], params, _engine()))
    assert gc.get_freeze_count() == 0 and set(result.feedback) == {p.id for p in params}

    import credit.backprop as backprop_module

    made: list[str] = []
    monkeypatch.setattr(backprop_module.gc, "freeze", lambda: made.append("freeze"))
    monkeypatch.setattr(backprop_module.gc, "unfreeze", lambda: made.append("unfreeze"))
    with old_objects_frozen():
        with old_objects_frozen():  # nested (or a concurrent step): the same freeze, not a second one
            pass
        assert made == ["freeze"]
    assert made == ["freeze", "unfreeze"]
    monkeypatch.setattr(backprop_module.gc, "get_freeze_count", lambda: 1000)  # the program froze its own heap
    asyncio.run(Backprop().assign([trace], params, _engine()))
    assert made == ["freeze", "unfreeze"]  # neither extended nor undone
