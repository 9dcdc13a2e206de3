"""Sandbox speed: latency, CPU time and throughput of a trivial call, cold start vs the warm pool.

    .venv/bin/python -m benchmarks.sandbox_speed [--calls N] [--json PATH]

Cold = two fresh interpreters and the kernel layers built per call (the path before the
warm pool, still the fallback); warm = a fork of the pre-hardened zygote.  Also a HumanEval
checked run (judge + program children).  Wall-clock figures (p50/p90, calls/s) depend on
what else the machine runs, so the load average is printed beside them, and so is the CPU
time per call (this process plus every sandbox process), which load barely moves.
Figures only; tests never assert wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import time

from textgrad_core import sandbox
from textgrad_core.sandbox import pool
from textgrad_core.sandbox.limits import Job, SandboxLimits

TARGETS = {"warm_p50_ms": 20, "warm_calls_per_s": 50}


def _cpu_s(warm: bool) -> float:
    """CPU seconds used so far by this process and by the sandbox processes of one kind.

    Cold children are this process's own (reaped by asyncio); warm ones are the zygote's."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if warm:
        z = pool.zygote(sandbox._kernel_layers_ok)
        zygote_cpu = z.cpu_seconds() if z is not None else None
        if zygote_cpu is None:
            raise RuntimeError("the warm pool is not available on this machine (runs would be cold)")
        return total + zygote_cpu
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + kids.ru_utime + kids.ru_stime


async def _one(warm: bool) -> float:
    start = time.perf_counter()
    outcome = await sandbox._execute(Job(code="pass", limits=SandboxLimits(), warm=warm))
    if not outcome.result.ok:
        raise RuntimeError(f"sandbox call failed: {outcome.result.error}")
    return time.perf_counter() - start


def _quantile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(warm: bool, calls: int) -> dict:
    """Sequential trivial calls: p50/p90 in ms and CPU ms per call."""
    await _one(warm)  # the zygote's start is paid once per process, not per call
    cpu0 = _cpu_s(warm)
    times = [await _one(warm) for _ in range(calls)]
    cpu = (_cpu_s(warm) - cpu0) / calls
    return {"p50_ms": round(statistics.median(times) * 1000, 1), "p90_ms": round(_quantile(times, 0.9) * 1000, 1),
            "cpu_ms_per_call": round(cpu * 1000, 2)}


async def throughput(warm: bool, calls: int) -> dict:
    """Trivial calls per second with the package's concurrency bound saturated, and CPU per call."""
    await _one(warm)
    cpu0 = _cpu_s(warm)
    start = time.perf_counter()
    await asyncio.gather(*(_one(warm) for _ in range(calls)))
    rate = calls / (time.perf_counter() - start)
    cpu = (_cpu_s(warm) - cpu0) / calls
    return {"calls_per_s": round(rate, 1), "cpu_ms_per_call": round(cpu * 1000, 2)}


async def checked_ms(calls: int) -> float:
    """p50 of a HumanEval-style checked run (judge child + program child)."""
    judge = "def judge():\n    return __peer__.function('f')(2) == 4\n"
    times = []
    for _ in range(calls + 1):
        start = time.perf_counter()
        run = await sandbox.acheck_program("def f(x):\n    return x * x\n", judge, "judge", [])
        if run.value is not True:
            raise RuntimeError(f"checked run failed: {run.judge.error}")
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1000


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def measure(calls: int) -> dict:
    """Every figure of this benchmark (``calls`` is bounded to 4..400)."""
    calls = min(max(calls, 4), 400)
    load_before = _load()
    cold = await latency(False, max(5, calls // 4))
    cold_rate = await throughput(False, max(8, calls // 2))
    warm = await latency(True, calls)
    warm_rate = await throughput(True, calls * 2)
    checked = await checked_ms(max(5, calls // 4))
    return {
        "load_avg_1_5_15": {"before": load_before, "after": _load()}, "cpus": os.cpu_count(),
        "cold": {**cold, **{"rate_" + k: v for k, v in cold_rate.items()}},
        "warm": {**warm, **{"rate_" + k: v for k, v in warm_rate.items()}},
        "p50_ratio_warm_over_cold": round(warm["p50_ms"] / cold["p50_ms"], 3),
        "cpu_ratio_warm_over_cold": round(warm["cpu_ms_per_call"] / cold["cpu_ms_per_call"], 3),
        "rate_ratio_warm_over_cold": round(warm_rate["calls_per_s"] / cold_rate["calls_per_s"], 2),
        "checked_run_p50_ms": round(checked, 1),
        "targets": TARGETS,
        "targets_met": {"warm_p50_ms": warm["p50_ms"] <= TARGETS["warm_p50_ms"],
                        "warm_calls_per_s": warm_rate["calls_per_s"] >= TARGETS["warm_calls_per_s"]},
    }


def main() -> None:
    """Print (and optionally write) the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="calls per measurement (bounded: 4 to 400)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.calls))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
