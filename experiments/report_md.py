"""The Markdown comparison report (and the same numbers as JSON): one table per task, one row per method."""
from __future__ import annotations

from typing import Any

from experiments.report_data import PHASES, MethodGroup

CI_NOTE = ("Scores are mean ± half-width of the two-sided 95% Student t confidence interval over seeds "
           "(t_{0.975, n-1} · s / √n); no interval when n = 1. Calls, tokens, cost and wall time are means per run.")


def _cost(group: MethodGroup, value: float) -> str:
    # $0.000 for a model without a price would read as "free": say it is unpriced instead.
    return f"unpriced ({', '.join(group.unpriced)})" if group.unpriced else f"${value:.3f}"


def _engine(group: MethodGroup) -> str:
    return f"**SIMULATION** ({group.method.get('models', '?')})" if group.simulated else group.method.get("models", "?")


def _num(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else (f"{x:.1f}" if abs(x) >= 100 else f"{x:.3f}")


def markdown_report(tasks: dict[str, list[MethodGroup]], plots: dict[str, list[str]] | None = None,
                    pages: dict[str, str] | None = None) -> str:
    """report.md text: per task a results table and a per-phase accounting table; links to plots and run pages."""
    lines = ["# Experiment report", "", CI_NOTE, ""]
    if any(g.simulated for groups in tasks.values() for g in groups):
        lines += ["> **SIMULATION**: rows marked SIMULATION come from the offline simulator engine, a test and demo "
                  "device; their scores are not LLM results.", ""]
    for task, groups in tasks.items():
        lines += [f"## {task}", "",
                  "| method | engine | n | status | val initial | val final | test initial | test final | calls | "
                  "tokens | cost | wall s | failures |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for g in groups:
            tokens = g.total_mean("input_tokens") + g.total_mean("output_tokens")
            lines.append("| " + " | ".join([
                g.label, _engine(g), str(len(g.runs)), g.statuses, g.score("val", "initial").fmt(),
                g.score("val", "final").fmt(), g.score("test", "initial").fmt(), g.score("test", "final").fmt(),
                _num(g.total_mean("calls")), _num(tokens), _cost(g, g.total_mean("cost_usd")),
                f"{g.total_mean('wall_s'):.2f}", str(g.failures)]) + " |")
        lines += ["", f"Per-phase accounting, {task} (mean per run):", "",
                  "| method | phase | calls | cache hits | input tokens | output tokens | cost | wall s |",
                  "|---|---|---|---|---|---|---|---|"]
        for g in groups:
            for phase in PHASES:
                lines.append("| " + " | ".join([
                    g.label, phase, _num(g.phase_mean(phase, "calls")), _num(g.phase_mean(phase, "cache_hits")),
                    _num(g.phase_mean(phase, "input_tokens")), _num(g.phase_mean(phase, "output_tokens")),
                    _cost(g, g.phase_mean(phase, "cost_usd")), f"{g.phase_mean(phase, 'wall_s'):.3f}"]) + " |")
        if groups[0].shared_overrides:
            lines += ["", f"Settings every {task} row shares: `{' '.join(groups[0].shared_overrides)}`"]
        lines += ["", "Runs: " + ", ".join(f"`{r.name}` (seed {r.seed})" for g in groups for r in g.runs), ""]
        for png in (plots or {}).get(task, []):
            lines += [f"![{png}]({png})", ""]
    if pages:
        lines += ["## Run pages", ""] + [f"- [{name}]({page})" for name, page in pages.items()] + [""]
    return "\n".join(lines)


def json_report(tasks: dict[str, list[MethodGroup]]) -> dict[str, Any]:
    """The numbers of report.md, unrounded, for tools and tests."""
    out: dict[str, Any] = {"interval": "95% Student t over seeds", "tasks": {}}
    for task, groups in tasks.items():
        rows = []
        for g in groups:
            scores = {f"{split}_{which}": vars(g.score(split, which))
                      for split in ("val", "test") for which in ("initial", "final")}
            rows.append({"method": g.method, "label": g.label, "simulated": g.simulated, "n": len(g.runs),
                         "status": g.statuses, "failures": g.failures, "unpriced_models": g.unpriced, **scores,
                         "phases": {p: {k: g.phase_mean(p, k) for k in ("calls", "cache_hits", "input_tokens",
                                                                         "output_tokens", "cost_usd", "wall_s")}
                                    for p in PHASES},
                         "runs": [str(r.path) for r in g.runs]})
        out["tasks"][task] = rows
    return out
