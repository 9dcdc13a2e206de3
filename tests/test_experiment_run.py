"""End to end: `python -m experiments.run` on the simulator improves validation and leaves a complete run directory."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.bbh_object_counting import ObjectCountingTask

ROOT = Path(__file__).resolve().parents[1]


def run_cli(tmp_path, *overrides):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "experiments.run", f"run_dir={tmp_path}", "trainer.progress=false", *overrides],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo")
    proc = run_cli(run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def test_demo_improves_validation_and_says_it_is_a_simulation(demo_run):
    run_dir, proc = demo_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["simulated"] is True and "not LLM results" in summary["notice"]
    assert "SIMULATION" in proc.stdout
    assert summary["val"]["final"] > summary["val"]["initial"]
    assert summary["test"]["final"] is not None and summary["test"]["initial"] is not None
    assert summary["parameters"]["instruction"]["version"] >= 1
    assert summary["phases"]["credit"]["calls"] > 0 and summary["phases"]["optimizer"]["calls"] > 0
    assert "validation" in proc.stdout and "cost by phase" in proc.stdout


def test_run_directory_is_complete_and_consistent(demo_run):
    run_dir, _ = demo_run
    for name in ("config.yaml", "metrics.jsonl", "calls.jsonl", "gradients.jsonl", "parameters.jsonl", "checkpoint.json", "summary.json"):
        assert (run_dir / name).exists(), name
    calls = [json.loads(l) for l in (run_dir / "calls.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(calls) == summary["usage"]["calls"] + summary["usage"]["cache_hits"]
    assert all(c["simulated"] for c in calls) and {c["role"] for c in calls} >= {"forward", "credit", "optimizer", "eval"}
    versions = [json.loads(l) for l in (run_dir / "parameters.jsonl").read_text().splitlines()]
    assert versions[0]["version"] == 0 and versions[0]["reason"] == "initial"
    assert [v["version"] for v in versions] == list(range(len(versions)))  # every version, in order
    checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
    assert checkpoint["parameters"]["instruction"]["value"] == summary["parameters"]["instruction"]["value"]
    metrics = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["decision"] == "initial" and all(m["simulated"] for m in metrics)
    for name in ("gradients.jsonl", "parameters.jsonl"):
        records = [json.loads(l) for l in (run_dir / name).read_text().splitlines()]
        assert records and all(r["simulated"] is True for r in records), name
    assert "provider: sim" in (run_dir / "config.yaml").read_text()


def test_test_split_never_reaches_a_call_that_can_change_a_parameter(demo_run):
    run_dir, _ = demo_run
    test_inputs = [e.input for e in ObjectCountingTask().load_splits().test]
    calls = [json.loads(l) for l in (run_dir / "calls.jsonl").read_text().splitlines()]
    shaping = [c for c in calls if c["role"] in ("forward", "credit", "optimizer")]
    text = "\n".join(m["content"] for c in shaping for m in c["messages"])
    assert shaping and not any(q in text for q in test_inputs)
    eval_text = "\n".join(m["content"] for c in calls if c["role"] == "eval" for m in c["messages"])
    assert any(q in eval_text for q in test_inputs)  # the test split was evaluated, by the eval role only


def test_bad_config_gives_one_clear_error(tmp_path):
    proc = run_cli(tmp_path, "credit.name=nonsense")
    assert proc.returncode == 2
    assert "Unknown credit strategy 'nonsense'. Known:" in proc.stderr and "Traceback" not in proc.stderr
