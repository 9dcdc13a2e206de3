"""PNG plots of a report: validation score by step per method, and final score against cost (the frontier)."""
from __future__ import annotations

import statistics
from pathlib import Path

from experiments.extras import require_extra
from experiments.report_data import MethodGroup


def _pyplot():
    require_extra("report")
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    return plt


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def validation_curve(task: str, groups: list[MethodGroup], out: Path) -> Path:
    """Mean over seeds of the kept parameters' validation score (best_val) at each step, one line per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for g in groups:
        by_step: dict[int, list[float]] = {}
        for r in g.runs:
            for m in r.metrics:
                value = m.get("best_val", m.get("val_score"))
                if isinstance(m.get("step"), int) and isinstance(value, (int, float)):
                    by_step.setdefault(m["step"], []).append(float(value))
        steps = sorted(by_step)
        ax.plot(steps, [statistics.fmean(by_step[s]) for s in steps], marker="o", label=f"{g.label} (n={len(g.runs)})")
    sim = " (SIMULATION: not LLM results)" if any(g.simulated for g in groups) else ""
    ax.set(title=f"{task}: validation score by step{sim}", xlabel="step (0 = initial)", ylabel="validation score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = out / f"{_safe(task)}_val_by_step.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cost_quality(task: str, groups: list[MethodGroup], out: Path) -> Path:
    """Final test score (validation when there is no test score) against mean cost per run, frontier drawn.

    Cost is in USD when every method is priced and some cost is non-zero; otherwise tokens per run, so that
    simulated and unpriced runs still show their price in work."""
    plt = _pyplot()
    split = "test" if all(g.score("test", "final").mean is not None for g in groups) else "val"
    use_usd = all(not g.unpriced for g in groups) and any(g.total_mean("cost_usd") > 0 for g in groups)
    points = []
    for g in groups:
        x = g.total_mean("cost_usd") if use_usd else g.total_mean("input_tokens") + g.total_mean("output_tokens")
        iv = g.score(split, "final")
        if iv.mean is not None:
            points.append((x, iv.mean, iv.half_width or 0.0, g.label))
    fig, ax = plt.subplots(figsize=(7, 4))
    for x, y, err, label in points:
        ax.errorbar([x], [y], yerr=[err], fmt="o", capsize=3, label=label)
    frontier, best = [], float("-inf")
    for x, y, _, _ in sorted(points, key=lambda p: (p[0], -p[1])):  # cheapest first: keep each new best score
        if y > best:
            frontier.append((x, y))
            best = y
    if len(frontier) > 1:
        ax.plot(*zip(*frontier), linestyle="--", color="grey", label="frontier")
    sim = " (SIMULATION)" if any(g.simulated for g in groups) else ""
    ax.set(title=f"{task}: final {split} score vs cost{sim}", ylabel=f"final {split} score",
           xlabel="cost per run (USD)" if use_usd else "tokens per run (cost unpriced or zero)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = out / f"{_safe(task)}_cost_quality.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
