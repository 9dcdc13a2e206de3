"""Kills: a run SIGKILLed at seeded moments — after a call-log line, while calls.jsonl grows, while checkpoint.json is
being replaced, right after a parameter version or a metrics record — and resumed ends exactly like an uninterrupted
run, and pays no completed call twice."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runs_cli import popen_cli, records, run_cli

# The cache on (completed calls are replayed on resume, never re-paid) and a small simulated latency, so that a
# kill can land anywhere in a step.
RUN = ("trainer.progress=false", "trainer.max_steps=4", "trainer.val_size=8", "trainer.test_size=6",
       "engine.cache.enabled=true", "engine.cache.path=cache.sqlite", "engine.options.latency_s=0.004",
       "engine.max_concurrency=4")
MOMENTS = ("calls_line", "calls_growing", "checkpoint_replace", "parameters_line", "metrics_line", "gradients_line")
FULL_KILLS = 24
FAST_KILLS = 2
DEADLINE_S = 120


def outcome(run_dir: Path) -> dict:
    """What must be identical between a resumed and an uninterrupted run."""
    summary = json.loads((run_dir / "summary.json").read_text())
    versions = [(r["param"], r["version"], r["reason"], r["value"]) for r in records(run_dir / "parameters.jsonl")]
    metrics = [(m["step"], m.get("val_score"), m.get("best_val"), m["decision"]) for m in records(run_dir / "metrics.jsonl")]
    return {"status": summary["status"], "val": summary["val"], "test": summary["test"],
            "parameters": summary["parameters"], "versions": versions, "metrics": metrics}


def repaid(run_dir: Path) -> int:
    """Requests that reached the backend (no cache hit) more than once."""
    paid = [json.dumps([c["messages"], c["sample_index"]]) for c in records(run_dir / "calls.jsonl") if not c.get("cache_hit")]
    return len(paid) - len(set(paid))


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _trigger(moment: str, n: int, run_dir: Path):
    """A poll function that says when to kill, and whether the kill landed inside a file write."""
    calls, metrics = run_dir / "calls.jsonl", run_dir / "metrics.jsonl"
    state = {"size": None}

    def poll() -> str | None:
        if moment == "calls_line":
            return "after a line" if _lines(calls) >= n else None
        if moment == "calls_growing":  # the first growth after n lines: often mid-line (half a record on disk)
            size = _size(calls)
            if _lines(calls) >= n and state["size"] is not None and size != state["size"]:
                return "mid-line" if not calls.read_bytes().endswith(b"\n") else "after a line"
            state["size"] = size if _lines(calls) >= n else None
            return None
        if moment == "checkpoint_replace":  # the temporary file of write_json_atomic exists: mid-replace
            if _lines(metrics) >= n and any(run_dir.glob(".checkpoint.json.*.tmp")):
                return "mid-write"
            return None
        name = {"parameters_line": "parameters.jsonl", "metrics_line": "metrics.jsonl", "gradients_line": "gradients.jsonl"}[moment]
        return "after a line" if _lines(run_dir / name) >= n else None

    return poll


def _threshold(moment: str, rng: random.Random, total_calls: int) -> int:
    # Past the first checkpoint (the initial evaluation: its calls, the first metrics line and the initial parameter
    # versions come before it), so there is a run to resume; kills before it are tested for a clean refusal below.
    if moment in ("calls_line", "calls_growing"):
        return rng.randrange(12, total_calls - 3)
    if moment == "gradients_line":
        return rng.randrange(1, 4)
    return rng.randrange(2, 5) if moment != "parameters_line" else rng.randrange(2, 4)


def plan(count: int, seed: int, total_calls: int) -> list[tuple[str, int]]:
    """`count` seeded kill moments, cycling through every kind of moment."""
    rng = random.Random(seed)
    return [(MOMENTS[i % len(MOMENTS)], _threshold(MOMENTS[i % len(MOMENTS)], rng, total_calls)) for i in range(count)]


def kill_and_resume(cwd: Path, moment: str, n: int, expected: dict) -> dict:
    """One run killed at its moment, then resumed; what happened, for the figures."""
    cwd.mkdir(parents=True)
    run_dir = cwd / "run"
    proc = popen_cli(cwd, f"run_dir={run_dir}", *RUN)
    poll, landed, end = _trigger(moment, n, run_dir), None, time.monotonic() + DEADLINE_S
    while proc.poll() is None and time.monotonic() < end:
        landed = poll()
        if landed:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    if proc.poll() is None and not landed:
        proc.kill()
    proc.communicate(timeout=60)
    item = {"moment": moment, "threshold": n, "killed": proc.returncode == -signal.SIGKILL and bool(landed),
            "landed": landed, "resumed": False, "identical": False, "repaid": 0, "run_dir": str(run_dir)}
    item["checkpoint"] = (run_dir / "checkpoint.json").exists()
    if not item["killed"]:
        return item
    resumed = run_cli(cwd, f"resume={run_dir}")
    if not item["checkpoint"]:  # killed before the first checkpoint: resume must refuse in one line, exit 2
        item["refused_cleanly"] = resumed.returncode == 2 and len(resumed.stderr.strip().splitlines()) == 1
        return item
    item["resumed"] = resumed.returncode == 0
    item["stderr"] = resumed.stderr[-500:] if resumed.returncode else ""
    if item["resumed"]:
        item["identical"] = outcome(run_dir) == expected
        item["repaid"] = repaid(run_dir)
        item["resumed_event"] = "resumed" in [e["kind"] for e in records(run_dir / "events.jsonl")]
    return item


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("whole")
    proc = run_cli(cwd, f"run_dir={cwd / 'run'}", *RUN)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return outcome(cwd / "run"), len(records(cwd / "run" / "calls.jsonl")), cwd / "run"


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, uninterrupted, full, figures):
    expected, total_calls, whole = uninterrupted
    moments = plan(FULL_KILLS if full else FAST_KILLS, seed=13 if full else 5, total_calls=total_calls)
    if not full:
        moments = [("calls_growing", moments[0][1]), ("checkpoint_replace", 3)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time: the machine has 2 cores
        items = list(pool.map(lambda im: kill_and_resume(tmp_path / f"k{im[0]}", *im[1], expected), enumerate(moments)))
    figures.add("isolation", "run_dirs", str(whole))
    for item in items:
        figures.add("kills", "kills", {k: v for k, v in item.items() if k not in ("stderr", "run_dir")})
        if item["resumed"]:
            figures.add("isolation", "run_dirs", item["run_dir"])
    killed = [i for i in items if i["killed"] and i["checkpoint"]]
    assert len(killed) >= (20 if full else 1), [(i["moment"], i["threshold"], i["landed"]) for i in items]
    assert all(i["refused_cleanly"] for i in items if i["killed"] and not i["checkpoint"])
    for item in killed:
        assert item["resumed"], item
        assert item["identical"], f"resumed after a kill at {item['moment']} {item['threshold']} differs"
        assert item["repaid"] == 0 and item["resumed_event"], item
    # Kills inside a file write (the checkpoint's temporary file exists); the fast slice's two kills may both miss it.
    assert any(i["landed"] in ("mid-write", "mid-line") for i in killed) or not full


def test_the_kill_plan_is_seeded_and_covers_every_moment():
    assert plan(FULL_KILLS, 13, 100) == plan(FULL_KILLS, 13, 100)
    assert {m for m, _ in plan(FULL_KILLS, 13, 100)} == set(MOMENTS) and FULL_KILLS >= 20
