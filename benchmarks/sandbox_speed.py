"""Sandbox speed: p50 latency and throughput of a trivial call, cold start vs the warm pool.

    .venv/bin/python -m benchmarks.sandbox_speed [--calls N] [--json PATH]

Cold = two fresh interpreters and the kernel layers built per call (the path before the
warm pool, still the fallback); warm = a fork of the pre-hardened zygote.  Also a HumanEval
checked run (judge + program children).  Figures only; tests never assert wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from textgrad_core import sandbox
from textgrad_core.sandbox.limits import Job, SandboxLimits


async def _one(warm: bool) -> float:
    start = time.perf_counter()
    outcome = await sandbox._execute(Job(code="pass", limits=SandboxLimits(), warm=warm))
    if not outcome.result.ok:
        raise RuntimeError(f"sandbox call failed: {outcome.result.error}")
    return time.perf_counter() - start


async def latency_ms(warm: bool, calls: int) -> float:
    """p50 of sequential trivial calls, in milliseconds."""
    await _one(warm)  # the zygote's start is paid once per process, not per call
    times = [await _one(warm) for _ in range(calls)]
    return statistics.median(times) * 1000


async def throughput(warm: bool, calls: int) -> float:
    """Trivial calls per second with the package's concurrency bound saturated."""
    start = time.perf_counter()
    await asyncio.gather(*(_one(warm) for _ in range(calls)))
    return calls / (time.perf_counter() - start)


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


async def measure(calls: int) -> dict:
    """Every figure of this benchmark."""
    cold_p50 = await latency_ms(False, max(5, calls // 4))
    cold_rate = await throughput(False, max(8, calls // 2))
    warm_p50 = await latency_ms(True, calls)
    warm_rate = await throughput(True, calls * 2)
    return {
        "cold_p50_ms": round(cold_p50, 1), "cold_calls_per_s": round(cold_rate, 1),
        "warm_p50_ms": round(warm_p50, 1), "warm_calls_per_s": round(warm_rate, 1),
        "p50_ratio_warm_over_cold": round(warm_p50 / cold_p50, 3),
        "rate_ratio_warm_over_cold": round(warm_rate / cold_rate, 2),
        "checked_run_p50_ms": round(await checked_ms(max(5, calls // 4)), 1),
        "targets": {"p50_ms": 20, "calls_per_s": 50},
    }


def main() -> None:
    """Print (and optionally write) the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="calls per measurement (bounded: at most 400)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(measure(min(max(args.calls, 4), 400)))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
