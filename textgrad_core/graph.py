"""The recorded computation graph of one forward pass, over networkx, with JSON, DOT and Mermaid export."""
from __future__ import annotations

import heapq
import json
from typing import Any, Iterable

import networkx as nx

from textgrad_core import validators as _validators
from textgrad_core.errors import ConfigError
from textgrad_core.variable import OpRecord, Parameter, ParameterVersion, Variable


def post_order(root: Variable) -> list[Variable]:
    """Every variable `root` depends on, inputs before the op that uses them, inputs in field order.

    The order depends only on the recorded structure (never on creation order or timing).
    """
    order: list[Variable] = []
    seen: set[int] = set()
    stack: list[tuple[Variable, bool]] = [(root, False)]
    while stack:
        var, expanded = stack.pop()
        if expanded:
            order.append(var)
            continue
        if id(var) in seen:
            continue
        seen.add(id(var))
        stack.append((var, True))
        for _, inp in reversed(var.op.inputs if var.op else []):
            if id(inp) not in seen:
                stack.append((inp, False))
    return order


def canonicalize_ids(losses: Iterable[Variable]) -> None:
    """Renumber every non-parameter variable the losses depend on, from the graph's structure alone.

    Why: ids appear in credit prompts, and creation order is not reproducible (a script with no tape draws
    provisional ids from a process-wide counter; concurrent ops inside one forward pass record in completion
    order). Each loss is one example: a variable only that loss reaches gets `v<k>`, its position in the loss's
    `post_order` (each example numbers from v0); a variable several losses reach (a constant shared by the batch)
    gets `s<k>`, numbered in the order the losses first reach it. Parameters keep their names. The same recorded
    graphs therefore give the same ids in any process, alone or after other runs. Renumbering changes `var.id`,
    so build a `Graph` after calling this, not before.
    """
    orders = [post_order(loss) for loss in losses]
    reached: dict[int, int] = {}
    for order in orders:
        for var in order:
            reached[id(var)] = reached.get(id(var), 0) + 1
    shared = 0
    named: set[int] = set()
    for order in orders:
        own = 0
        for var in order:
            if isinstance(var, Parameter) or id(var) in named:
                continue
            if reached[id(var)] > 1:
                var.id, shared = f"s{shared}", shared + 1
                named.add(id(var))
            else:
                var.id, own = f"v{own}", own + 1


class Graph:
    """A DAG whose nodes are Variables and whose edges run from an op's inputs to its output."""

    def __init__(self, variables: Iterable[Variable] = ()):
        self.g = nx.DiGraph()
        for var in variables:
            self.add(var)

    @classmethod
    def from_output(cls, *outputs: Variable) -> "Graph":
        """Everything the outputs depend on, found by walking the recorded ops backwards."""
        graph = cls()
        for out in outputs:
            graph.add(out)
        return graph

    def add(self, var: Variable) -> None:
        """Add a variable and, recursively, the inputs of the op that produced it."""
        stack = [var]
        while stack:
            v = stack.pop()
            known = self.g.nodes[v.id].get("var") if v.id in self.g else None
            if known is v:
                continue
            if known is not None:
                raise ConfigError(
                    f"Two different variables share the id '{v.id}' in one graph (a parameter named like a tape "
                    "position, or one example recorded on two tapes): record each example's forward pass and loss "
                    "on one Tape, or call textgrad_core.graph.canonicalize_ids(losses) before building the graph.")
            self.g.add_node(v.id, var=v)
            for _, inp in (v.op.inputs if v.op else []):
                stack.append(inp)
                self.g.add_edge(inp.id, v.id)

    def var(self, node_id: str) -> Variable:
        return self.g.nodes[node_id]["var"]

    def __contains__(self, var: Variable | str) -> bool:
        return (var if isinstance(var, str) else var.id) in self.g

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    @property
    def variables(self) -> list[Variable]:
        return [self.var(n) for n in self.g.nodes]

    def parameters(self) -> list[Parameter]:
        """The trainable parameters that appear in this graph."""
        return [v for v in self.variables if isinstance(v, Parameter)]

    def topological_order(self) -> list[Variable]:
        """Inputs before the ops that use them (deterministic for a given recording).

        Kahn's algorithm with a heap on the padded id (ties, which distinct ids never produce, by insertion order):
        the same order as networkx's lexicographical_topological_sort with that key, in O((V + E) log V).
        """
        g = self.g
        pred, succ, nodes = g._pred, g._succ, g._node  # the raw adjacency dicts: no view object per lookup
        pending = {n: len(pred[n]) for n in pred}
        position = {n: i for i, n in enumerate(nodes)}
        ready = [(_order_key(n), position[n], n) for n, k in pending.items() if k == 0]
        heapq.heapify(ready)
        order: list[Variable] = []
        while ready:
            node = heapq.heappop(ready)[2]
            order.append(nodes[node]["var"])
            for nxt in succ[node]:
                pending[nxt] -= 1
                if pending[nxt] == 0:
                    heapq.heappush(ready, (_order_key(nxt), position[nxt], nxt))
        if len(order) != len(pending):
            raise ConfigError("The recorded graph has a cycle: an op's output was fed back as its own input; "
                              "record each value once (create a new Variable per step).")
        return order

    def successors(self, var: Variable) -> list[Variable]:
        """The outputs of the ops that read `var`, in the order they were recorded."""
        return [self.var(n) for n in self.g.successors(var.id)]

    def successor_map(self) -> dict[str, list[Variable]]:
        """Every node's successors at once (id -> variables, recorded order): one pass instead of a lookup per node."""
        nodes = self.g._node
        return {n: [nodes[s]["var"] for s in after] for n, after in self.g._succ.items()}

    def depends_on(self, var: Variable) -> set[str]:
        """Ids of `var` and of every variable it depends on (one backward walk; empty when `var` is not here)."""
        return _reach(self.g._pred, [var.id]) if var.id in self.g else set()

    def minimal_subgraph(self, output: Variable, params: Iterable[Variable] | None = None) -> "Graph":
        """Nodes on some path from a trainable parameter to `output`: what credit must flow through.

        Linear in the graph: one backward walk from the output, then one forward walk from all the parameters at once
        (a multi-source search) that never leaves what the output depends on. Nothing a node outside that set reaches
        can be upstream of the output, so pruning there loses no path. Nodes and each node's successors keep the
        recorded order. An output that is not in the graph gives an empty graph.
        """
        sub = Graph()
        upstream = self.depends_on(output)
        if not upstream:
            return sub
        sources = [p.id for p in (params if params is not None else self.parameters()) if p.id in upstream]
        keep = _reach(self.g._succ, sources, within=upstream)
        nodes, succ = self.g._node, self.g._succ
        kept = [n for n in nodes if n in keep]
        sub.g.add_nodes_from((n, nodes[n]) for n in kept)
        sub.g.add_edges_from((n, s) for n in kept for s in succ[n] if s in keep)
        return sub

    # ---- export -------------------------------------------------------------------------
    def to_json(self, history: bool = True) -> dict[str, Any]:
        """A JSON-ready description from which `from_json` rebuilds an equal graph (every Parameter field included).

        `history=False` leaves out each parameter's version history (it grows with every step, so a per-step log
        would repeat it); the rebuilt parameter then starts a history of its own at the saved value.

        A parameter's own validators are saved as their config dicts ({"max_length": N}, {"pattern": ...},
        {"range": [...]}, {"defines": ...}); one that has no config form (a function, a custom class) cannot be
        written as JSON: its name is listed under `unsaved_validators` and the rebuilt parameter lacks that check.
        The kind's default validators are not saved: the rebuilt parameter derives them again from its kind.
        """
        nodes = []
        for v in self.topological_order():
            node: dict[str, Any] = {"id": v.id, "role": v.role, "value": _jsonable(v.value),
                                    "requires_grad": v.requires_grad, "feedback": list(v.feedback), "score": v.score,
                                    "type": type(v).__name__}
            if v.example_id is not None:
                node["example_id"] = v.example_id
            if isinstance(v, Parameter):
                node.update(_parameter_fields(v, history))
            if v.op is not None:
                node["op"] = {"name": v.op.name, "kind": v.op.kind, "inputs": [[f, i.id] for f, i in v.op.inputs],
                              "description": v.op.description, "source": v.op.source, "prompt": v.op.prompt,
                              "template": v.op.template, "error": v.op.error}
            nodes.append(node)
        return {"format": "textgrad_core.graph/1", "nodes": nodes}

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> "Graph":
        """Rebuild a graph written by `to_json`; data of another shape is one ConfigError."""
        try:
            if isinstance(data, str):
                data = json.loads(data)
            return cls(_rebuild(data["nodes"]).values())
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"Not a graph written by Graph.to_json ({type(exc).__name__}: {exc}); pass the dict "
                              "to_json returned, or its JSON text.") from None

    def to_dot(self) -> str:
        """Graphviz DOT text."""
        lines = ["digraph G {", "  rankdir=LR;"]
        for v in self.topological_order():
            shape = "box" if isinstance(v, Parameter) else ("octagon" if v.is_error else "ellipse")
            label = f"{v.op.name if v.op else 'input'}\\n{v.role}"
            lines.append(f'  "{v.id}" [shape={shape}, label="{_escape(label)}"];')
        for a, b in self.g.edges:
            lines.append(f'  "{a}" -> "{b}";')
        lines.append("}")
        return "\n".join(lines)

    def to_mermaid(self) -> str:
        """Mermaid flowchart text."""
        lines = ["flowchart LR"]
        for v in self.topological_order():
            label = _escape(f"{v.op.name if v.op else 'input'}: {v.role}").replace('"', "'")
            left, right = ("[[", "]]") if isinstance(v, Parameter) else ("([", "])") if v.op is None else ("[", "]")
            lines.append(f'  {v.id}{left}"{label}"{right}')
        for a, b in self.g.edges:
            lines.append(f"  {a} --> {b}")
        return "\n".join(lines)


def _order_key(node_id: str) -> str:
    """Ids padded so that v9 sorts before v10."""
    return node_id.rjust(12, "0")


def _reach(adjacency: dict[str, Any], starts: Iterable[str], within: set[str] | None = None) -> set[str]:
    """`starts` and every node reachable from them along `adjacency` (staying inside `within`, when given)."""
    seen = set(starts)
    stack = list(seen)
    while stack:
        for nxt in adjacency[stack.pop()]:
            if nxt not in seen and (within is None or nxt in within):
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _parameter_fields(p: Parameter, history: bool = True) -> dict[str, Any]:
    """Every field of a Parameter beyond a Variable's, as JSON (see Graph.to_json for validators)."""
    declared = p.validators[len(_validators.default_validators(p.kind, p.choices, p.allowed_ids)):]
    configs = [_validator_config(v) for v in declared]
    unsaved = [f"{type(v).__name__}({v.name})" for v, c in zip(declared, configs) if c is None]
    fields = {"name": p.name, "kind": p.kind, "constraints": list(p.constraints),
              "choices": _jsonable(p.choices), "allowed_ids": _jsonable(p.allowed_ids), "pool": _jsonable(p.pool),
              "validators": [c for c in configs if c is not None],
              "unsaved_validators": unsaved + list(getattr(p, "unsaved_validators", []))}
    if history:
        fields["history"] = [{"version": h.version, "value": _jsonable(h.value), "step": h.step, "reason": h.reason,
                              "ts": h.ts} for h in p.history]
    return fields


def _validator_config(v: Any) -> dict[str, Any] | None:
    """The config dict `validators.from_config` turns back into an equal validator; None when there is none."""
    kind = type(v)
    if kind is _validators.MaxLength:
        return {"max_length": v.chars, "factor": v.factor, "slack": v.slack}
    if kind is _validators.Pattern:
        return {"pattern": v.regex.pattern, "description": v.description}
    if kind is _validators.NumberRange:
        return {"range": [v.low, v.high], "integer": v.integer}
    if kind is _validators.Compiles:
        return {"defines": v.function, "max_chars": v.max_chars}
    return None


def _rebuild(nodes: list[dict[str, Any]]) -> dict[str, Variable]:
    """Variables from `to_json` nodes (in topological order, so every input is built before its op's output)."""
    built: dict[str, Variable] = {}
    for node in nodes:
        op = None
        if node.get("op"):
            o = node["op"]
            op = OpRecord(name=o["name"], kind=o["kind"], inputs=[(f, built[i]) for f, i in o["inputs"]],
                          description=o.get("description", ""), source=o.get("source"), prompt=o.get("prompt"),
                          template=o.get("template"), error=o.get("error"))
        if node.get("type") == "Parameter":
            history = [ParameterVersion(h["version"], h["value"], h["step"], h["reason"], h["ts"])
                       for h in node.get("history", [])]
            var: Variable = Parameter(value=node["value"], role=node["role"], name=node["name"], kind=node["kind"],
                                      constraints=list(node.get("constraints", [])), choices=node.get("choices"),
                                      allowed_ids=node.get("allowed_ids"), pool=node.get("pool"),
                                      validators=list(node.get("validators", [])), history=history)
            if node.get("unsaved_validators"):  # carried, so that writing the rebuilt graph still says so
                var.unsaved_validators = list(node["unsaved_validators"])
        else:
            var = Variable(value=node["value"], role=node["role"], requires_grad=node["requires_grad"], op=op)
            var.id = node["id"]
        var.feedback = list(node.get("feedback", []))
        var.score = node.get("score")
        var.example_id = node.get("example_id")
        built[node["id"]] = var
    return built


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
