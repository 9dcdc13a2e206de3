"""Console report of a finished run."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """Scores before and after, and what the run cost per phase."""
    console = console or Console()
    if summary.get("simulated"):
        console.print(f"[bold yellow]{summary['notice']}[/]")
    search = f"  search={summary['search']['selection']}" if summary.get("search") else ""
    scores = Table(title=f"{summary['task']}  credit={summary['credit']}  optimizer={summary['optimizer']}{search}")
    for col in ("", "initial", "final"):
        scores.add_column(col)
    scores.add_row("validation", _fmt(summary["val"]["initial"]), _fmt(summary["val"]["final"]))
    scores.add_row("test", _fmt(summary["test"]["initial"]), _fmt(summary["test"]["final"]))
    console.print(scores)
    cost = Table(title="cost by phase")
    for col in ("phase", "calls", "cache hits", "input tok", "output tok", "cost $", "wall s"):
        cost.add_column(col, justify="right")
    for phase, row in summary["phases"].items():
        cost.add_row(phase, *(_fmt(row[k]) for k in ("calls", "cache_hits", "input_tokens", "output_tokens", "cost_usd", "wall_s")))
    u = summary["usage"]
    cost.add_row("total", _fmt(u["calls"]), _fmt(u["cache_hits"]), _fmt(u["input_tokens"]), _fmt(u["output_tokens"]),
                 _fmt(u["cost_usd"]), _fmt(summary["wall_s"]))
    console.print(cost)
    if summary.get("stopped"):
        console.print(f"[red]stopped early:[/] {summary['stopped']}")
    console.print(f"run directory: {summary.get('run_dir')}")
