"""Read run and sweep directories into records a report can group by task and method, and aggregate over seeds."""
from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from textgrad_core.errors import ConfigError
from textgrad_core.phases import PHASES  # one list of phases for the run and its reports

RUN_MARKERS = ("summary.json", "metrics.jsonl", "run.json")
# Overrides that do not make a different method: the seed (what we average over) and where the files go.
NOT_AN_AXIS = ("trainer.seed", "run_dir", "runs_root", "resume", "trainer.progress", "hydra.", "hydra/")
# Two-sided 95% Student t quantiles t_{0.975, df}; beyond df=30 the normal 1.96 is within 2%.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


class NotARunDir(ConfigError):
    """A path given to the report is neither a run directory nor a sweep directory."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a missing file is empty and a torn last line (a killed run) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in RUN_MARKERS)


def find_run_dirs(path: Path) -> list[Path]:
    """The run directories at `path`: itself, the jobs of a sweep, or the runs and sweeps inside a runs/ folder."""
    path = Path(path)
    if not path.is_dir():
        raise NotARunDir(f"{path}: no such directory; give a run directory, a sweep directory or a folder of them.")
    if is_run_dir(path):
        return [path]
    found = []
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if is_run_dir(child):
            found.append(child)
        else:
            found.extend(sorted(g for g in child.iterdir() if is_run_dir(g)) if child.is_dir() else [])
    if not found:
        raise NotARunDir(f"{path}: not a run or sweep directory (no summary.json, metrics.jsonl or run.json in it or "
                         f"in its sub-directories); give the directory a run printed at its end.")
    return found


@dataclass
class RunRecord:
    """One run directory's files, read defensively: older or killed runs may lack some of them."""

    path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        path = Path(path)
        config: dict[str, Any] = {}
        if (path / "config.yaml").exists():
            try:
                config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
            except yaml.YAMLError:
                config = {}
        return cls(path, _read_json(path / "summary.json"), _read_json(path / "run.json"), config)

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "metrics.jsonl")

    @cached_property
    def calls(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "calls.jsonl")

    @cached_property
    def gradients(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "gradients.jsonl")

    @cached_property
    def parameters(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "parameters.jsonl")

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "events.jsonl")

    @cached_property
    def graphs(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "graphs.jsonl")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.run.get("run_id") or self.path.name)

    @property
    def task(self) -> str:
        return str(self.summary.get("task") or _name(self.config.get("task")) or "unknown task")

    @property
    def simulated(self) -> bool:
        if "simulated" in self.summary:
            return bool(self.summary["simulated"])
        return bool(self.run.get("simulated") or any(m.get("simulated") for m in self.metrics[:1]))

    @property
    def status(self) -> str:
        """completed | stopped | failed from summary.json; `running?` for a run that has not written one."""
        if not self.summary:
            return "running?"
        if self.summary.get("status"):
            return str(self.summary["status"])
        return "stopped" if self.summary.get("stopped") else "completed"

    @property
    def seed(self) -> Any:
        return (self.config.get("trainer") or {}).get("seed")

    @property
    def method(self) -> dict[str, str]:
        """The axes that make this run a method: credit, optimizer, search, models, and other non-seed overrides."""
        s, c = self.summary, self.config
        search = s.get("search")
        search_name = search.get("selection") if isinstance(search, dict) else search
        search_name = search_name or _name(c.get("search")) or "none"
        engines = s.get("engines") or {}
        models = sorted({str(v) for v in engines.values()}) if isinstance(engines, dict) else []
        out = {"credit": str(s.get("credit") or _name(c.get("credit")) or "?"),
               "optimizer": str(s.get("optimizer") or _name(c.get("optimizer")) or "?"),
               "search": str(search_name), "models": ", ".join(models) or "?"}
        covered = ("task=", "credit=", "optimizer=", "search=")
        extra = [o for o in self.overrides if not o.lstrip("+~").startswith(NOT_AN_AXIS + covered)]
        if extra:
            out["overrides"] = " ".join(sorted(extra))
        return out

    @property
    def overrides(self) -> list[str]:
        found = self.run.get("overrides")
        if found is None and (self.path / ".hydra" / "overrides.yaml").exists():
            found = yaml.safe_load((self.path / ".hydra" / "overrides.yaml").read_text(encoding="utf-8"))
        return [str(o) for o in (found or [])]

    def score(self, split: str, which: str) -> float | None:
        value = (self.summary.get(split) or {}).get(which)
        return float(value) if isinstance(value, (int, float)) else None

    def phase(self, name: str) -> dict[str, float]:
        row = (self.summary.get("phases") or {}).get(name) or {}
        return {k: float(row.get(k) or 0) for k in ("calls", "cache_hits", "input_tokens", "output_tokens", "cost_usd",
                                                     "wall_s")}

    @property
    def unpriced(self) -> list[str]:
        return list((self.summary.get("usage") or {}).get("unpriced_models") or [])

    @property
    def failures(self) -> int:
        """Failed LLM calls and failed examples: summary.failures when the run wrote it, else the call log's errors."""
        recorded = self.summary.get("failures")
        if isinstance(recorded, dict):
            return _count_failed(recorded)
        if isinstance(recorded, (int, float)):
            return int(recorded)
        return sum(1 for c in self.calls if c.get("error"))


def _count_failed(tree: dict[str, Any], inside: bool = False) -> int:
    """Sum of the counts under keys naming failures (failed_passes, failed_calls{role: n}); retries are not failures."""
    total = 0
    for key, value in tree.items():
        failed = inside or "fail" in str(key)
        if isinstance(value, dict):
            total += _count_failed(value, failed)
        elif failed and isinstance(value, (int, float)) and not isinstance(value, bool):
            total += int(value)
    return total


def _name(group: Any) -> str | None:
    return group.get("name") if isinstance(group, dict) else None


def method_label(method: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in method.items() if k != "models" and v)


@dataclass
class Interval:
    """Mean and the half-width of its two-sided 95% Student t confidence interval (None when n < 2)."""

    mean: float | None
    half_width: float | None
    n: int

    def fmt(self, digits: int = 3) -> str:
        if self.mean is None:
            return "-"
        text = f"{self.mean:.{digits}f}"
        return text + (f" ± {self.half_width:.{digits}f}" if self.half_width is not None else "")


def t_interval(values: list[float | None]) -> Interval:
    """Mean ± t_{0.975,n-1}·s/√n over the values that are present."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return Interval(None, None, 0)
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return Interval(mean, None, len(xs))
    df = len(xs) - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96
    return Interval(mean, t * statistics.stdev(xs) / math.sqrt(len(xs)), len(xs))


@dataclass
class MethodGroup:
    """The runs of one task and one method (one per seed, normally)."""

    task: str
    method: dict[str, str]
    runs: list[RunRecord]

    shared_overrides: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        own = [o for o in self.method.get("overrides", "").split() if o not in self.shared_overrides]
        return method_label({**self.method, "overrides": " ".join(own)})

    @property
    def simulated(self) -> bool:
        return any(r.simulated for r in self.runs)

    def score(self, split: str, which: str) -> Interval:
        return t_interval([r.score(split, which) for r in self.runs])

    def phase_mean(self, phase: str, key: str) -> float:
        return statistics.fmean(r.phase(phase)[key] for r in self.runs)

    def total_mean(self, key: str) -> float:
        """Mean over runs of the sum over phases (calls, tokens, cost, wall)."""
        return statistics.fmean(sum(r.phase(p)[key] for p in PHASES) for r in self.runs)

    @property
    def unpriced(self) -> list[str]:
        return sorted({m for r in self.runs for m in r.unpriced})

    @property
    def statuses(self) -> str:
        counts = Counter(r.status for r in self.runs)
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.runs)


def group_runs(runs: list[RunRecord]) -> dict[str, list[MethodGroup]]:
    """Runs grouped by task, then by method (same axes, any seed), in a stable order."""
    by_key: dict[tuple[str, tuple[tuple[str, str], ...]], list[RunRecord]] = {}
    for r in runs:
        by_key.setdefault((r.task, tuple(sorted(r.method.items()))), []).append(r)
    tasks: dict[str, list[MethodGroup]] = {}
    for (task, method), members in sorted(by_key.items()):
        members.sort(key=lambda r: (str(r.seed), r.name))
        tasks.setdefault(task, []).append(MethodGroup(task, dict(members[0].method), members))
    for groups in tasks.values():  # overrides every method shares are no axis: keep them out of the labels
        shared = set.intersection(*(set(g.method.get("overrides", "").split()) for g in groups))
        for g in groups:
            g.shared_overrides = sorted(shared)
    return tasks


def load_runs(paths: list[Path]) -> list[RunRecord]:
    """Every run under the given paths, each once; NotARunDir names the first path that holds none."""
    seen: dict[Path, RunRecord] = {}
    for p in paths:
        for d in find_run_dirs(Path(p)):
            seen.setdefault(d.resolve(), RunRecord.load(d))
    return list(seen.values())
