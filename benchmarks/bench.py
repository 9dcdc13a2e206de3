"""Run the whole benchmark and write docs/benchmarks.md: `python -m benchmarks.bench` (what `make bench` runs).

`--smoke` runs a tiny slice (small batches, 0 ms latency, no peers, small scale sizes) into a temporary work dir and
writes no doc unless `--doc` is given; the test suite uses it.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import measure, peers, profile_split, scale
from benchmarks.report import write_report
from benchmarks.spec import WORKLOADS
from benchmarks.workloads import PAIRS

ROOT = Path(__file__).resolve().parent.parent
LATENCIES = (0.0, 0.3)
SMOKE_OVERRIDES = {"a": {"batch": 2, "steps": 1}, "b": {"batch": 4}, "c": {"batch": 1}}


def import_times(smoke: bool = False) -> dict[str, Any]:
    """Seconds to import the library and the trainer (-X importtime, cumulative) and for a CLI config error (wall)."""
    out: dict[str, Any] = {}
    modules = (("import textgrad_core", "textgrad_core"), ("import textgrad_core.trainer", "textgrad_core.trainer"),
               ("import openai", "openai"))
    for label, module in modules[:1] if smoke else modules:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        out[label] = _cumulative_us(proc.stderr, module) / 1e6 if proc.returncode == 0 else None
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "task=no_such_task"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    out["CLI config error (wall)"] = time.perf_counter() - start
    out["CLI config error message"] = (proc.stderr.strip().splitlines() or [""])[-1][:200]
    out["CLI config error lines"] = len(proc.stderr.strip().splitlines())
    return out


def _cumulative_us(stderr: str, module: str) -> float:
    """The cumulative microseconds -X importtime reports for `module` (the top-level import line)."""
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|\s*(\S+)\s*$", line)
        if match and match.group(2) == module:
            return float(match.group(1))
    return 0.0


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    import os
    try:
        import openai
        openai_version = openai.__version__
    except ImportError:
        openai_version = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "openai": openai_version, "date": time.strftime("%Y-%m-%d")}


def ours_only(workdir: Path, latencies: tuple[float, ...], log: Any = print) -> list[dict[str, Any]]:
    """Only our workloads' runs (wall, limits and their ratios, first request), at the given latencies."""
    rows = []
    for key in WORKLOADS:
        for pair in PAIRS:
            for latency in latencies:
                log(f"ours: workload {key} {pair} at {latency * 1000:.0f} ms")
                rows.append({"workload": key, "pair": pair, **measure.ours(key, pair, latency, workdir)})
    return rows


def ours_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per run: the figures the start-up and schedule targets are judged by."""
    def f(x: Any) -> str:
        return "n/a" if x is None else f"{x:.2f}"
    return [f"({r['workload']}) {r['pair']:13s} {r['latency_s'] * 1000:4.0f} ms: wall {f(r['wall_s'])} s, first request "
            f"{f(r['first_request_s'])} s, wall/dependency {f(r.get('wall_over_dependency'))}, wall/schedule "
            f"{f(r.get('wall_over_schedule'))}, CPU {f(r.get('cpu_s'))} s, load {r.get('load_1min', 0):.2f}"
            for r in rows]


def run_all(workdir: Path, smoke: bool = False, with_peers: bool = True, log: Any = print) -> dict[str, Any]:
    """Every measurement; returns the figures the report is written from (also saved as workdir/figures.json)."""
    workdir.mkdir(parents=True, exist_ok=True)
    latencies = (0.0,) if smoke else LATENCIES
    figures: dict[str, Any] = {"machine": machine(), "smoke": smoke, "ours": [], "profiles": {}, "peers": []}
    for key in ("a",) if smoke else WORKLOADS:
        overrides = SMOKE_OVERRIDES[key] if smoke else None
        for pair in PAIRS:
            for latency in latencies:
                log(f"ours: workload {key} {pair} at {latency * 1000:.0f} ms")
                figures["ours"].append({"workload": key, "pair": pair,
                                        **measure.ours(key, pair, latency, workdir, overrides=overrides)})
            if smoke and pair != PAIRS[0]:
                continue
            log(f"ours: workload {key} {pair} profile (0 ms, warmed up)")
            prof = measure.ours(key, pair, 0.0, workdir, profile=True, warm=True, overrides=overrides)
            calls = prof["server"]["calls"] - 1
            figures["profiles"][f"{key} {pair}"] = {
                "calls": calls, "cpu_ms_per_call_run": prof.get("cpu_ms_per_call_run"),
                **(profile_split.split(prof["profile"], calls) if prof.get("profile") and Path(prof["profile"]).exists() else {})}
    if with_peers and not smoke:
        for peer in peers.PEERS:
            for key in ("a", "b"):
                for latency in latencies:
                    log(f"peer {peer}: workload {key} at {latency * 1000:.0f} ms")
                    figures["peers"].append({"peer": peer, "workload": key, **peers.run(peer, key, latency, workdir)})
    log("import times")
    figures["imports"] = import_times(smoke)
    log("scale")
    figures["scale"] = scale.run(sizes=(50, 200) if smoke else scale.SIZES, agent_steps=20 if smoke else 1000)
    (workdir / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
    return figures


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description="Run the benchmarks and write docs/benchmarks.md.")
    parser.add_argument("--workdir", default=str(ROOT / ".cache" / "bench"), help="where servers' logs, results and peers' venvs go")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--smoke", action="store_true", help="a tiny slice: 0 ms, small sizes, no peers, no doc")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--from-figures", default=None, help="only rewrite the doc from a saved figures.json")
    parser.add_argument("--ours-only", action="store_true",
                        help="only our workloads (wall, limits, first request) at --latency; prints, writes no doc")
    parser.add_argument("--latency", type=float, action="append", default=None,
                        help="with --ours-only: seconds per call (repeatable; default 0.3)")
    a = parser.parse_args(argv)
    workdir = Path(a.workdir)
    if a.ours_only:
        rows = ours_only(workdir, tuple(a.latency or [0.3]), log=lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True))
        (workdir / "ours.json").write_text(json.dumps(rows, indent=1, default=str))
        print("\n".join(ours_lines(rows)))
        return
    if a.from_figures:
        figures = json.loads(Path(a.from_figures).read_text())
    else:
        figures = run_all(workdir, smoke=a.smoke, with_peers=not a.no_peers,
                          log=lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True))
    if not a.smoke or a.from_figures:
        write_report(figures, Path(a.doc))
        print(f"wrote {a.doc}")


if __name__ == "__main__":
    main()
