"""Reports: the console summary of one run, and `python -m experiments.report <run|sweep dir>... [--out DIR]`.

The command writes report.md (a table per task, one row per method, mean ± 95% Student t CI over seeds),
report.json (the same numbers), PNG plots, and one self-contained HTML page per run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from textgrad_core.errors import TextgradError


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """Scores before and after, and what the run cost per phase (\"unpriced\" for models without a price)."""
    console = console or Console()
    if summary.get("simulated"):
        notice = str(summary.get("notice") or "")
        if "SIMULATION" not in notice:
            notice = f"SIMULATION: offline simulator engine; its scores are not LLM results. {notice}".strip()
        console.print(f"[bold yellow]{notice}[/]")
    search = summary.get("search")
    search = f"  search={search.get('selection') if isinstance(search, dict) else search}" if search else ""
    scores = Table(title=f"{summary.get('task')}  credit={summary.get('credit')}  "
                         f"optimizer={summary.get('optimizer')}{search}")
    for col in ("", "initial", "final"):
        scores.add_column(col)
    for label, split in (("validation", "val"), ("test", "test")):
        row = summary.get(split) or {}
        scores.add_row(label, _fmt(row.get("initial")), _fmt(row.get("final")))
    console.print(scores)
    usage = summary.get("usage") or {}
    unpriced = usage.get("unpriced_models") or []
    cost_text = (lambda v: "unpriced") if unpriced else _fmt  # $0.000 would claim the unpriced calls were free
    cost = Table(title="cost by phase")
    for col in ("phase", "calls", "cache hits", "input tok", "output tok", "cost $", "wall s"):
        cost.add_column(col, justify="right")
    for phase, row in (summary.get("phases") or {}).items():
        cost.add_row(phase, *(_fmt(row.get(k)) for k in ("calls", "cache_hits", "input_tokens", "output_tokens")),
                     cost_text(row.get("cost_usd")), _fmt(row.get("wall_s")))
    cost.add_row("total", _fmt(usage.get("calls")), _fmt(usage.get("cache_hits")), _fmt(usage.get("input_tokens")),
                 _fmt(usage.get("output_tokens")), cost_text(usage.get("cost_usd")), _fmt(summary.get("wall_s")))
    console.print(cost)
    if unpriced:
        console.print(f"[yellow]unpriced models (no price in the table; add them under `pricing:`):[/] "
                      f"{', '.join(unpriced)}")
    status = summary.get("status")
    reason = summary.get("stop_reason") or summary.get("stopped")
    if status and status != "completed":
        console.print(f"[red]{status}:[/] {reason or summary.get('error') or ''}")
    elif reason:
        console.print(f"[red]stopped early:[/] {reason}")
    console.print(f"run directory: {summary.get('run_dir')}")


def write_report(paths: list[Path], out: Path | None = None, plots: bool = True) -> dict[str, Any]:
    """Read the runs under `paths` and write report.md, report.json, plots and run pages into `out`."""
    from experiments.html_report import write_run_page
    from experiments.report_data import group_runs, load_runs
    from experiments.report_md import json_report, markdown_report

    runs = load_runs(paths)
    out = Path(out) if out else (Path(paths[0]) / "report" if len(paths) == 1 else Path("report"))
    out.mkdir(parents=True, exist_ok=True)
    tasks = group_runs(runs)
    pngs: dict[str, list[str]] = {}
    if plots:
        from experiments.plots import cost_quality, validation_curve
        for task, groups in tasks.items():
            pngs[task] = [validation_curve(task, groups, out).name, cost_quality(task, groups, out).name]
    names = [r.name for r in runs]
    pages = {}
    for r in runs:  # jobs of different sweeps share names (000_<task>_...): prefix the sweep's name then
        name = r.name if names.count(r.name) == 1 else f"{r.path.parent.name}__{r.name}"
        pages[name] = str(write_run_page(r, out / "runs", name).relative_to(out))
    (out / "report.md").write_text(markdown_report(tasks, pngs, pages), encoding="utf-8")
    data = json_report(tasks)
    data.update(plots=pngs, pages=pages)
    (out / "report.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return {"out": out, "runs": len(runs), "tasks": list(tasks), "plots": pngs, "pages": pages}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit 2 with one line for a path that holds no run."""
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run directories, sweep directories, or folders of them")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write (default: <the directory given>/report, or ./report for several)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    args = parser.parse_args(argv)
    try:
        result = write_report(args.paths, args.out, plots=not args.no_plots)
    except TextgradError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report of {result['runs']} run(s), task(s) {', '.join(result['tasks'])}: {result['out'] / 'report.md'}")
    print(f"{len(result['pages'])} run page(s) in {result['out'] / 'runs'}, plots: "
          f"{', '.join(p for ps in result['plots'].values() for p in ps) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
