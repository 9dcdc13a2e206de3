"""Test-split isolation over the whole suite: every call log the other reliability tests produced is scanned; no
test input may appear in a forward, credit, optimizer or validation call outside the test split."""
from __future__ import annotations

from pathlib import Path

import pytest

from reliability.isolation import scan


@pytest.mark.reliability_last
def test_no_test_input_reaches_a_call_that_can_change_a_parameter(tmp_path_factory, figures):
    base = tmp_path_factory.getbasetemp()
    # Real run directories only (run.json): the checkers' own fixtures plant a leak on purpose.
    # Without config.yaml (a Trainer driven directly by a unit test) the run's task, hence its test split, is unknown.
    logs = {p.parent for p in base.rglob("calls.jsonl") if (p.parent / "run.json").exists()
            and (p.parent / "config.yaml").exists()}
    logs |= {Path(d) for d in figures.data.get("isolation", {}).get("run_dirs", []) if (Path(d) / "calls.jsonl").exists()}
    results = [scan(d) for d in sorted(logs)]
    leaks = [leak for r in results for leak in r["leaks"]]
    figures.set("isolation", "call_logs", len(results))
    figures.set("isolation", "calls", sum(r["calls"] for r in results))
    figures.set("isolation", "guarded_calls", sum(r["guarded_calls"] for r in results))
    figures.set("isolation", "test_inputs", sum(r["test_inputs"] for r in results))
    figures.set("isolation", "test_calls_with_inputs", sum(r["test_calls_with_inputs"] for r in results))
    figures.set("isolation", "leaks", len(leaks))
    assert results, "no call log to scan: the tests that make runs did not run"
    assert sum(r["test_calls_with_inputs"] for r in results) > 0  # the scanner does see test inputs where they belong
    assert leaks == [], leaks[:5]
