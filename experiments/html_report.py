"""One self-contained HTML page per run (no network: inline CSS and SVG): graph, parameter histories, curve, costs."""
from __future__ import annotations

import difflib
import re
from html import escape
from pathlib import Path
from typing import Any

from experiments.html_graph import graph_svg, recorded_graph
from experiments.report_data import PHASES, RunRecord

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
.banner{background:#fff0b3;border:2px solid #e0a800;padding:10px 14px;font-weight:bold;margin-bottom:16px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}pre{white-space:pre-wrap;background:#f7f7f7;padding:8px;margin:4px 0}
del{background:#ffd6d6;text-decoration:line-through}ins{background:#d4f7d4;text-decoration:none}
.version{border-left:4px solid #8aa;padding-left:10px;margin:10px 0}.accepted{border-color:#2e8b57}
.reverted,.rejected{border-color:#c0392b}.graph{overflow-x:auto;border:1px solid #ddd;padding:6px}
.muted{color:#666;font-size:90%}"""


def word_diff(old: str, new: str) -> str:
    """HTML of the change from old to new: deleted words struck through, inserted words highlighted."""
    a, b = re.split(r"(\s+)", old), re.split(r"(\s+)", new)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            out.append(f"<del>{escape(''.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins>{escape(''.join(b[j1:j2]))}</ins>")
        if op == "equal":
            out.append(escape("".join(a[i1:i2])))
    return "".join(out)


def _step_window(run: RunRecord, step: int) -> tuple[float, float]:
    """Time span of a step (after the previous metric record, up to its own) for call logs without a step field."""
    ts = {m.get("step"): m.get("ts") for m in run.metrics}
    return float(ts.get(step - 1) or 0.0), float(ts.get(step) or float("inf"))


def optimizer_replies(run: RunRecord, param: str, step: int) -> list[str]:
    """Replies of the optimizer calls of this step that concern the parameter (or all parameters, for joint ones)."""
    calls = [c for c in run.calls if (c.get("phase") or c.get("role")) == "optimizer"]
    if any("step" in c for c in calls):
        calls = [c for c in calls if c.get("step") == step]
    else:
        lo, hi = _step_window(run, step)
        calls = [c for c in calls if lo <= float(c.get("ts") or 0) <= hi]
    mine = [c for c in calls if str(c.get("tag", "")).split(":")[-1] == param]
    return [str(c.get("reply") or c.get("error") or "") for c in (mine or calls)]


def _decision(run: RunRecord, param: str, step: Any) -> str:
    for m in run.metrics:
        if m.get("step") == step:
            for u in m.get("updates") or []:
                if u.get("param_id") == param:
                    return f"{m.get('decision')} (validation {m.get('val_score')}, best {m.get('best_val')})"
            return f"{m.get('decision')} (validation {m.get('val_score')})"
    return "no validation record"


def parameter_history(run: RunRecord) -> str:
    """Per parameter: each version as a diff from the previous one, its feedback, the optimizer reply, the decision."""
    by_param: dict[str, list[dict[str, Any]]] = {}
    for v in run.parameters:
        by_param.setdefault(str(v.get("param")), []).append(v)
    for pid in (run.summary.get("parameters") or {}):
        by_param.setdefault(str(pid), [])
    parts = []
    for pid, versions in by_param.items():
        final = (run.summary.get("parameters") or {}).get(pid, {})
        parts.append(f'<section class="parameter" id="param-{escape(pid)}" data-param="{escape(pid)}">'
                     f'<h3>parameter <code>{escape(pid)}</code></h3>'
                     f'<p class="muted">{len(versions)} version(s); final version {escape(str(final.get("version")))}</p>')
        prev = None
        for v in versions:
            step = v.get("step")
            value = str(v.get("value"))
            decision = _decision(run, pid, step) if step is not None else "initial value"
            klass = decision.split(" ")[0] if step is not None else "initial"
            parts.append(f'<div class="version {escape(klass)}"><b>v{escape(str(v.get("version")))}</b> '
                         f'step {escape(str(step))} — {escape(str(v.get("reason")))} — decision: {escape(decision)}')
            parts.append(f"<pre>{word_diff(prev, value) if prev is not None else escape(value)}</pre>")
            if step is not None:
                feedback = [g for g in run.gradients if g.get("step") == step and g.get("param") in (pid, "*")]
                if feedback:
                    items = "".join(f"<li>{escape(str(g.get('example')))}: {escape(str(g.get('feedback') or g.get('trace') or ''))[:2000]}</li>"
                                    for g in feedback)
                    parts.append(f"<details><summary>feedback ({len(feedback)})</summary><ul>{items}</ul></details>")
                replies = optimizer_replies(run, pid, step)
                if replies:
                    parts.append("<details><summary>optimizer reply</summary>" +
                                 "".join(f"<pre>{escape(r[:4000])}</pre>" for r in replies) + "</details>")
            parts.append("</div>")
            prev = value
        parts.append("</section>")
    return "".join(parts)


_DECISION_COLOUR = {"initial": "#2e8b57", "accepted": "#2e8b57", "reverted": "#c0392b", "rejected": "#c0392b"}


def score_curve_svg(run: RunRecord, width: int = 640, height: int = 240) -> str:
    """Validation score by step (candidate score dots, kept score line) with the numbers as a table below."""
    pts = [(m["step"], m.get("val_score"), m.get("best_val"), m.get("decision")) for m in run.metrics
           if isinstance(m.get("step"), int)]
    if not pts:
        return '<div id="score-curve"><p>No metrics.jsonl records.</p></div>'
    max_step = max(p[0] for p in pts) or 1
    sx = lambda s: 40 + (width - 60) * s / max_step  # noqa: E731 - tiny coordinate maps
    sy = lambda v: height - 30 - (height - 50) * float(v)  # noqa: E731 - scores are in [0, 1]
    kept = " ".join(f"{sx(s):.1f},{sy(b):.1f}" for s, _, b, _ in pts if isinstance(b, (int, float)))
    dots = "".join(f'<circle class="point" data-step="{s}" data-val="{v}" cx="{sx(s):.1f}" cy="{sy(v):.1f}" r="4" '
                   f'fill="{_DECISION_COLOUR.get(str(d), "#888888")}"><title>step {s}: {v} ({escape(str(d))})'
                   f'</title></circle>' for s, v, _, d in pts if isinstance(v, (int, float)))
    axes = (f'<line x1="40" y1="{height - 30}" x2="{width - 20}" y2="{height - 30}" stroke="#333"/>'
            f'<line x1="40" y1="20" x2="40" y2="{height - 30}" stroke="#333"/>'
            f'<text x="{width // 2}" y="{height - 4}" font-size="11" text-anchor="middle">step</text>'
            + "".join(f'<text x="{sx(s):.1f}" y="{height - 16}" font-size="10" text-anchor="middle">{s}</text>'
                      for s, _, _, _ in pts)
            + f'<text x="4" y="{sy(1.0):.0f}" font-size="10">1.0</text><text x="4" y="{sy(0.5):.0f}" font-size="10">0.5</text>'
            f'<text x="4" y="{sy(0.0):.0f}" font-size="10">0.0</text>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="validation score by step">{axes}<polyline fill="none" stroke="#1f5fbf" stroke-width="2" '
           f'points="{kept}"/>{dots}</svg>')
    rows = "".join(f"<tr><td>{s}</td><td>{v}</td><td>{b}</td><td class='l'>{escape(str(d))}</td></tr>" for s, v, b, d in pts)
    return (f'<div id="score-curve">{svg}<table><tr><th>step</th><th>validation</th><th>best kept</th>'
            f'<th class="l">decision</th></tr>{rows}</table></div>')


def phase_table(run: RunRecord) -> str:
    unpriced = run.unpriced
    rows = []
    for phase in PHASES:
        p = run.phase(phase)
        cost = "unpriced" if unpriced else f"${p['cost_usd']:.4f}"
        rows.append(f"<tr><td class='l'>{phase}</td><td>{p['calls']:.0f}</td><td>{p['cache_hits']:.0f}</td>"
                    f"<td>{p['input_tokens']:.0f}</td><td>{p['output_tokens']:.0f}</td><td>{cost}</td>"
                    f"<td>{p['wall_s']:.3f}</td></tr>")
    return ('<table id="phases"><tr><th class="l">phase</th><th>calls</th><th>cache hits</th><th>input tokens</th>'
            f'<th>output tokens</th><th>cost</th><th>wall s</th></tr>{"".join(rows)}</table>'
            + (f"<p>Models without a price: {escape(', '.join(unpriced))}</p>" if unpriced else ""))


def run_page(run: RunRecord) -> str:
    """The whole page as one string."""
    s = run.summary
    notice = str(s.get("notice") or "this run used the offline simulator engine; its scores are not LLM results.")
    notice = notice if notice.startswith("SIMULATION") else f"SIMULATION — {notice}"
    banner = f'<div class="banner" id="simulation-banner">{escape(notice)}</div>' if run.simulated else ""
    graph, where = recorded_graph(run)
    graph_html = graph_svg(graph) if graph else "<p>No graph to draw.</p>"
    scores = "".join(f"<tr><td class='l'>{split}</td><td>{run.score(split, 'initial')}</td><td>{run.score(split, 'final')}</td></tr>"
                     for split in ("val", "test"))
    meta = (f"task <b>{escape(run.task)}</b> · credit <b>{escape(run.method['credit'])}</b> · optimizer "
            f"<b>{escape(run.method['optimizer'])}</b> · search <b>{escape(run.method['search'])}</b> · models "
            f"{escape(run.method['models'])} · status <b>{escape(run.status)}</b> · seed {escape(str(run.seed))}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(run.run_id)}</title>'
            f'<style>{CSS}</style></head><body>{banner}<h1>{escape(run.run_id)}</h1><p>{meta}</p>'
            f'<table id="scores"><tr><th class="l">split</th><th>initial</th><th>final</th></tr>{scores}</table>'
            f'<h2>Validation score by step</h2>{score_curve_svg(run)}'
            f'<h2>Computation graph of one example</h2><p class="muted">{escape(where)}</p>'
            f'<div class="graph" id="graph">{graph_html}</div>'
            f'<h2>Parameters</h2><div id="parameters">{parameter_history(run)}</div>'
            f'<h2>Accounting by phase</h2>{phase_table(run)}'
            f'<p class="muted">run directory: {escape(str(run.path))}</p></body></html>')


def write_run_page(run: RunRecord, out_dir: Path, name: str | None = None) -> Path:
    """Write <out_dir>/<name or run directory name>.html and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name or run.name}.html"
    path.write_text(run_page(run), encoding="utf-8")
    return path
