"""Progress you can watch: one line per sweep job (status, step, best validation, cost so far), and for a run a
line per step plus a bar for long evaluations.

The trainer calls a `ProgressReporter`: `on_step(record)` with each metrics.jsonl record, `on_eval(split, done,
total)` while a split is scored, `close()` at the end. `python -m experiments.progress <sweep dir> [--watch S]`
prints the job lines of a sweep (refreshing every S seconds until no job is running)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from experiments.report_data import NotARunDir, read_jsonl


class ProgressReporter:
    """Console progress of one run; in a sweep job (job is a number) plain prefixed lines that interleave cleanly."""

    def __init__(self, console: Console | None = None, job: int | None = None, max_steps: int | None = None,
                 bar_min_total: int = 20, label: str | None = None):
        self.console = console or Console(stderr=True)
        self.job, self.max_steps, self.bar_min_total = job, max_steps, bar_min_total
        self.label = label  # e.g. SIMULATION: on every line, so no figure is read as an LLM result
        self._bar: Any = None
        self._task: Any = None
        self.cost_usd = 0.0

    @property
    def prefix(self) -> str:
        job = f"[job {self.job:03d}] " if self.job is not None else ""
        return job + (f"{self.label} " if self.label else "")

    def on_step(self, record: dict[str, Any], cost_usd: float | None = None) -> None:
        """One line for a finished step: step, decision, validation and best validation, cost so far."""
        if cost_usd is not None:
            self.cost_usd = float(cost_usd)
        of = f"/{self.max_steps}" if self.max_steps else ""
        self.console.print(f"{self.prefix}step {record.get('step')}{of} {record.get('decision', '')}: "
                           f"val {_score(record.get('val_score'))} best {_score(record.get('best_val'))} "
                           f"cost ${self.cost_usd:.4f}", highlight=False, markup=False)

    def on_eval(self, split: str, done: int, total: int) -> None:
        """Advance the evaluation bar (shown for evaluations of at least bar_min_total examples, not in sweeps)."""
        if self.job is not None or total < self.bar_min_total:
            return
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(f"scoring {split}", total=total)
        self._bar.update(self._task, completed=done, total=total, description=f"scoring {split}")
        if done >= total:
            self._stop_bar()

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar, self._task = None, None

    def close(self) -> None:
        self._stop_bar()


def _score(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "-"


def job_line(job: dict[str, Any], base: Path) -> str:
    """`000 completed  step 3/3  best val 0.640  cost $0.0000  credit=backprop trainer.seed=0` for one index entry."""
    run_dir = Path(job.get("run_dir") or "")
    if not run_dir.is_absolute():
        run_dir = base / run_dir if (base / run_dir).exists() else run_dir
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    last = metrics[-1] if metrics else {}
    cost = job.get("cost_usd")
    if cost is None:  # a running job: add up its call log so far
        cost = sum(float(c.get("cost_usd") or 0) for c in read_jsonl(run_dir / "calls.jsonl"))
    steps = job.get("steps")
    step = f"step {last.get('step', '-')}" + (f"/{steps}" if steps is not None else "")
    overrides = " ".join(o for o in job.get("overrides") or [] if not o.startswith("trainer.progress"))
    return (f"{int(job.get('job', -1)):03d} {str(job.get('status', '?')):<9} {step:<10} "
            f"best val {_score(last.get('best_val'))}  cost ${float(cost):.4f}  {overrides}")


def sweep_lines(sweep_dir: Path) -> list[str]:
    """One line per job of a sweep, from its index.json and each job's files."""
    index_path = Path(sweep_dir) / "index.json"
    if not index_path.exists():
        raise NotARunDir(f"{sweep_dir}: no index.json; give the sweep directory a -m run printed (runs/sweep_...).")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    # run_dir entries are relative to the directory the sweep was launched from: the sweep dir's grandparent.
    base = Path(sweep_dir).resolve().parent.parent
    return [job_line(j, base) for j in index.get("jobs") or []]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.progress", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--watch", type=float, default=0.0, help="refresh every N seconds until no job is running")
    parser.add_argument("--max-s", type=float, default=24 * 3600.0, help="stop watching after this many seconds")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.max_s
    try:
        while True:
            lines = sweep_lines(args.sweep_dir)
            print("\n".join(lines), flush=True)
            if args.watch <= 0 or not any(" running " in line for line in lines) or time.monotonic() > deadline:
                return 0
            time.sleep(args.watch)
            print(flush=True)
    except NotARunDir as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
