"""Smoke test of benchmarks/sandbox_speed.py: a small run yields every figure, sane and consistent.

No wall-clock figure is asserted (the machine is shared); CPU time per call is: a warm call is
a fork of the zygote, a cold one starts two interpreters, so if the warm path silently fell
back to cold starts the two would cost the same.
"""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import sandbox_speed
from textgrad_core import sandbox
from textgrad_core.sandbox import pool


def test_a_small_run_reports_every_figure():
    if pool.zygote(sandbox._kernel_layers_ok) is None:
        pytest.skip("no warm pool on this machine")
    figures = asyncio.run(sandbox_speed.measure(4))
    for kind in ("cold", "warm"):
        f = figures[kind]
        assert 0 < f["p50_ms"] <= f["p90_ms"]
        assert f["rate_calls_per_s"] > 0
        assert f["cpu_ms_per_call"] > 0 and f["rate_cpu_ms_per_call"] > 0
    assert figures["warm"]["cpu_ms_per_call"] < figures["cold"]["cpu_ms_per_call"]
    assert figures["checked_run_p50_ms"] > 0
    assert len(figures["load_avg_1_5_15"]["before"]) == 3
    assert set(figures["targets_met"]) == set(figures["targets"])


def test_the_zygote_accounts_for_its_runs_cpu():
    z = pool.zygote(sandbox._kernel_layers_ok)
    if z is None or z.cpu_seconds() is None:
        pytest.skip("no warm pool on this machine")
    before = z.cpu_seconds()
    busy = "x = 0\nfor i in range(3_000_000):\n    x += i\n"
    for _ in range(3):
        assert sandbox.run_code(busy).ok
    assert z.cpu_seconds() - before >= 0.05  # the runs' CPU reaches the zygote's reaped-children time
