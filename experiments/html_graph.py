"""The computation graph of one example as inline SVG: from graphs.jsonl, else reconstructed from the call log."""
from __future__ import annotations

from html import escape
from typing import Any

from experiments.report_data import RunRecord

NODE_W, NODE_H, GAP_X, GAP_Y = 190, 46, 60, 22


def recorded_graph(run: RunRecord) -> tuple[dict[str, Any] | None, str]:
    """The first recorded graph (Graph.to_json) and where it came from; a reconstruction when none was recorded."""
    for record in run.graphs:
        graph = record.get("graph")
        if isinstance(graph, dict) and graph.get("nodes"):
            where = f"graphs.jsonl, step {record.get('step')}, example {record.get('example_id')}"
            return graph, where
    rebuilt = reconstruct_from_calls(run)
    if rebuilt is None:
        return None, "no graphs.jsonl and no forward calls in calls.jsonl"
    return rebuilt, "reconstructed from calls.jsonl (this run wrote no graphs.jsonl): an edge means the value appears in the call's prompt"


def _forward_calls_of_first_example(run: RunRecord) -> list[dict[str, Any]]:
    forward = [c for c in run.calls if (c.get("phase") or c.get("role")) == "forward"]
    if not forward:
        return []
    first_id = forward[0].get("example_id")
    if first_id is not None:
        return [c for c in forward if c.get("example_id") == first_id and c.get("step") == forward[0].get("step")]
    out, seen = [], set()
    for c in forward:  # without example ids: the first pass ends where an op repeats
        if c.get("tag") in seen:
            break
        seen.add(c.get("tag"))
        out.append(c)
    return out


def reconstruct_from_calls(run: RunRecord) -> dict[str, Any] | None:
    """Graph JSON (the Graph.to_json shape) of the first example's forward calls, parameters and loss."""
    calls = _forward_calls_of_first_example(run)
    if not calls:
        return None
    initial = {}
    for p in run.parameters:
        initial.setdefault(p.get("param"), p.get("value"))
    nodes: list[dict[str, Any]] = [{"id": f"param:{pid}", "type": "Parameter", "name": pid, "role": "parameter",
                                    "value": value} for pid, value in initial.items()]
    outputs: list[tuple[str, str]] = []
    for i, c in enumerate(calls):
        prompt = "\n".join(str(m.get("content", "")) for m in c.get("messages") or [])
        inputs = [["param", f"param:{pid}"] for pid, value in initial.items() if value and str(value) in prompt]
        inputs += [["input", oid] for oid, reply in outputs if reply and reply.strip() in prompt]
        nid = f"op{i}"
        nodes.append({"id": nid, "type": "Variable", "role": "output of " + str(c.get("tag")), "value": c.get("reply"),
                      "op": {"name": str(c.get("tag", "llm")).split(":")[-1], "kind": "llm", "inputs": inputs}})
        outputs.append((nid, str(c.get("reply") or "")))
    nodes.append({"id": "loss", "type": "Variable", "role": "loss (task metric)", "value": "",
                  "op": {"name": "metric", "kind": "loss", "inputs": [["output", outputs[-1][0]]]}})
    return {"format": "reconstructed", "nodes": nodes}


def _layers(nodes: list[dict[str, Any]]) -> dict[str, int]:
    depth: dict[str, int] = {}
    for n in nodes:  # Graph.to_json lists inputs before the ops that use them
        ins = [i for _, i in (n.get("op") or {}).get("inputs", [])]
        depth[n["id"]] = 1 + max((depth.get(i, 0) for i in ins), default=-1)
    return depth


def _is_loss(node: dict[str, Any], last: bool) -> bool:
    op = node.get("op") or {}
    return op.get("kind") == "loss" or "loss" in str(node.get("role", "")).lower() or (last and node.get("score") is not None)


def graph_svg(graph: dict[str, Any]) -> str:
    """Inline SVG: parameters as boxes, ops as rounded boxes, plain inputs as ellipses, the loss in red."""
    nodes = graph.get("nodes") or []
    depth = _layers(nodes)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for n in nodes:
        d = depth[n["id"]]
        pos[n["id"]] = (20 + d * (NODE_W + GAP_X), 20 + rows.get(d, 0) * (NODE_H + GAP_Y))
        rows[d] = rows.get(d, 0) + 1
    width = 40 + (max(depth.values(), default=0) + 1) * (NODE_W + GAP_X)
    height = 40 + max(rows.values(), default=1) * (NODE_H + GAP_Y)
    parts = [f'<svg id="graph-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="computation graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for n in nodes:
        x2, y2 = pos[n["id"]]
        for _, src in (n.get("op") or {}).get("inputs", []):
            if src in pos:
                x1, y1 = pos[src]
                parts.append(f'<line class="edge" data-from="{escape(src)}" data-to="{escape(n["id"])}" '
                             f'x1="{x1 + NODE_W}" y1="{y1 + NODE_H // 2}" x2="{x2}" y2="{y2 + NODE_H // 2}" '
                             'stroke="#555" stroke-width="1.3" marker-end="url(#arrow)"/>')
    for i, n in enumerate(nodes):
        x, y = pos[n["id"]]
        op = n.get("op") or {}
        is_param = n.get("type") == "Parameter"
        kind = "param" if is_param else ("loss" if _is_loss(n, i == len(nodes) - 1) else ("op" if op else "input"))
        fill = {"param": "#fff3c4", "loss": "#ffd6d6", "op": "#dbe9ff", "input": "#eeeeee"}[kind]
        stroke = "#c0392b" if kind == "loss" else "#444"
        title = f"{n.get('name') or op.get('name') or 'input'} — {n.get('role', '')}\n{str(n.get('value', ''))[:400]}"
        head = (n.get("name") or n["id"]) if is_param else (op.get("name") or "input")
        sub = str(n.get("role", ""))[:30]
        shape = (f'<ellipse cx="{x + NODE_W // 2}" cy="{y + NODE_H // 2}" rx="{NODE_W // 2}" ry="{NODE_H // 2}" '
                 f'fill="{fill}" stroke="{stroke}"/>' if kind == "input" else
                 f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="{0 if is_param else 9}" '
                 f'fill="{fill}" stroke="{stroke}" stroke-width="{2 if kind in ("param", "loss") else 1}"/>')
        parts.append(f'<g class="node node-{kind}" data-id="{escape(n["id"])}" data-kind="{kind}"><title>'
                     f'{escape(title)}</title>{shape}'
                     f'<text x="{x + NODE_W // 2}" y="{y + 19}" text-anchor="middle" font-size="13" '
                     f'font-weight="bold">{escape(str(head)[:26])}</text>'
                     f'<text x="{x + NODE_W // 2}" y="{y + 36}" text-anchor="middle" font-size="10">'
                     f'{escape(sub)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
