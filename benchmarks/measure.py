"""Measure one client process against a fresh mock server: wall, time to first request, calls, tokens, CPU, RSS.

The client runs in its own process, started after the server is up, so its wall time includes interpreter start,
imports and set-up; its CPU and peak RSS come from the kernel (`os.wait4`), the server's view from its call log.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.calllog import read_log, summarize
from benchmarks.mock_server import MockServer, ServerSettings

ROOT = Path(__file__).resolve().parent.parent


def run_client(args: list[str], workdir: Path, name: str, latency: float, env: dict[str, str] | None = None,
               timeout_s: float = 600.0) -> dict[str, Any]:
    """Start a server, run `args` (with {base_url} and {out} filled in) as the client, and collect its figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    log, out = workdir / f"{name}.calls.jsonl", workdir / f"{name}.result.json"
    for p in (log, out):
        p.unlink(missing_ok=True)
    with MockServer(log, ServerSettings(latency=latency)) as server:
        argv = [a.format(base_url=server.base_url, out=str(out)) for a in args]
        child_env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_BASE_URL": server.base_url,
                     "OPENAI_API_BASE": server.base_url, "OPENAI_API_KEY": "dummy", **(env or {})}
        t0 = time.time()
        proc = subprocess.Popen(argv, cwd=str(workdir), env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        wall = time.time() - t0
        usage = _child_usage()
    summary = summarize(read_log(log))
    result = json.loads(out.read_text()) if out.exists() else {}
    figures: dict[str, Any] = {
        "name": name, "latency_s": latency, "returncode": proc.returncode, "wall_s": wall,
        "first_request_s": (summary.first_start - t0) if summary.first_start else None,
        "server": summary.as_dict(), "result": result, "cpu_s": usage.get("cpu_s"),
        "peak_rss_mb": result.get("peak_rss_mb") or usage.get("peak_rss_mb"),
        "stderr_tail": stderr[-2000:] if proc.returncode else "",
        "load_1min": os.getloadavg()[0],  # other processes on the machine: read every wall figure with it
    }
    if summary.calls:
        figures["cpu_ms_per_call"] = 1000 * (figures["cpu_s"] or 0) / summary.calls
    return figures


_last_children = {"cpu_s": 0.0}


def _child_usage() -> dict[str, float]:
    """CPU of the child just waited for: the difference in RUSAGE_CHILDREN (the server is still running then)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = r.ru_utime + r.ru_stime
    cpu = total - _last_children["cpu_s"]
    _last_children["cpu_s"] = total
    return {"cpu_s": cpu, "peak_rss_mb": r.ru_maxrss / 1024}


def ours(workload: str, pair: str, latency: float, workdir: Path, profile: bool = False, warm: bool = False,
         overrides: dict[str, int] | None = None) -> dict[str, Any]:
    """One run of our workload in its own process, with the limits its call DAG implies."""
    name = f"ours_{workload}_{pair.replace('+', '_')}_{int(latency * 1000)}ms" + ("_profile" if profile else "") + ("_warm" if warm else "")
    args = [sys.executable, "-m", "benchmarks.workloads", "--workload", workload, "--pair", pair,
            "--base-url", "{base_url}", "--out", "{out}"]
    if profile:
        args += ["--profile", str(workdir / f"{name}.prof")]
    if warm:
        args += ["--warm-up"]
    for key, value in (overrides or {}).items():
        args += [f"--{key}", str(value)]
    figures = run_client(args, workdir, name, latency)
    r = figures["result"]
    if r:
        figures["dependency_limit_s"] = r["depth"] * latency
        figures["schedule_limit_s"] = r["schedule_rounds"] * latency
        if latency > 0:
            figures["wall_over_dependency"] = figures["wall_s"] / figures["dependency_limit_s"]
            figures["wall_over_schedule"] = figures["wall_s"] / figures["schedule_limit_s"]
        calls = figures["server"]["calls"] - (1 if warm else 0)
        figures["cpu_ms_per_call_run"] = 1000 * r["cpu_run_s"] / max(calls, 1)
        figures["profile"] = str(workdir / f"{name}.prof") if profile else None
    return figures
