"""Resume: a run SIGKILLed at seeded random moments and resumed ends exactly like an uninterrupted run, and no call
that had completed is paid twice; Ctrl-C writes a `stopped` summary and the run resumes from it."""
from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from pathlib import Path

import pytest

from runs_cli import popen_cli, records, run_cli
from textgrad_core.engines import EngineSet, JsonlLog, LLMRequest, ScriptedBackend
from textgrad_core.engines.cache import RequestCache

# A run with the request cache on (so completed calls are replayed, never re-paid) and a small simulated latency
# (so a kill can land anywhere: mid-forward, mid-credit, mid-validation, between steps, during file writes).
RUN = ("trainer.progress=false", "trainer.max_steps=4", "trainer.val_size=8", "trainer.test_size=6",
       "engine.cache.enabled=true", "engine.cache.path=cache.sqlite", "engine.options.latency_s=0.004",
       "engine.max_concurrency=4")


def _outcome(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    versions = [(r["param"], r["version"], r["reason"], r["value"]) for r in records(run_dir / "parameters.jsonl")]
    metrics = [(m["step"], m.get("val_score"), m.get("best_val"), m["decision"]) for m in records(run_dir / "metrics.jsonl")]
    return {"status": summary["status"], "val": summary["val"], "test": summary["test"],
            "parameters": summary["parameters"], "versions": versions, "metrics": metrics}


def _paid(run_dir: Path) -> list[str]:
    """The requests that reached the engine's backend (not served from the cache), one entry per payment."""
    return [json.dumps([c["messages"], c["sample_index"]]) for c in records(run_dir / "calls.jsonl")
            if not c.get("cache_hit")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("whole")
    proc = run_cli(cwd, f"run_dir={cwd / 'run'}", *RUN)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _outcome(cwd / "run"), len(records(cwd / "run" / "calls.jsonl"))


def _kill_after(cwd: Path, run_dir: Path, calls: int, deadline_s: float = 120) -> bool:
    """Start a run and SIGKILL it once its call log holds `calls` records; False when it finished first."""
    proc = popen_cli(cwd, f"run_dir={run_dir}", *RUN)
    log = run_dir / "calls.jsonl"
    end = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < end:
        if log.exists() and log.read_bytes().count(b"\n") >= calls:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    return False


def test_runs_killed_at_ten_seeded_moments_resume_to_the_uninterrupted_result(tmp_path, uninterrupted):
    expected, total_calls = uninterrupted
    rng = random.Random(8)
    points = sorted(rng.sample(range(1, total_calls - 5), 10))
    killed = 0
    for i, point in enumerate(points):
        cwd = tmp_path / f"k{i}"
        cwd.mkdir()
        run_dir = cwd / "run"
        if not _kill_after(cwd, run_dir, point):
            continue
        killed += 1
        if not (run_dir / "checkpoint.json").exists():  # killed before the initial evaluation finished
            continue  # nothing to resume: the only way on is a fresh run (tested below as "no checkpoint")
        proc = run_cli(cwd, f"resume={run_dir}")
        assert proc.returncode == 0, (point, proc.stderr[-2000:])
        assert _outcome(run_dir) == expected, f"killed after {point} calls"
        paid = _paid(run_dir)
        assert len(paid) == len(set(paid)), f"killed after {point} calls: a completed call was paid twice"
        events = [e["kind"] for e in records(run_dir / "events.jsonl")]
        assert "resumed" in events
    assert killed >= 8  # the seeded points land inside the run


def test_resume_without_a_checkpoint_is_one_clear_error(tmp_path):
    proc = run_cli(tmp_path, f"resume={tmp_path}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error:") and "resume=" in line


def test_ctrl_c_writes_a_stopped_summary_and_the_run_resumes(tmp_path, uninterrupted):
    expected, _ = uninterrupted
    run_dir = tmp_path / "run"
    proc = popen_cli(tmp_path, f"run_dir={run_dir}", *RUN)
    end = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < end:
        if (run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").read_bytes().count(b"\n") >= 2:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.002)
    _, err = proc.communicate(timeout=120)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["stop_reason"] == "interrupted", err[-2000:]
    assert summary["usage"]["calls"] > 0 and "Traceback" not in err
    resumed = run_cli(tmp_path, f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _outcome(run_dir) == expected


def test_a_reply_logged_but_never_cached_is_put_back_and_not_paid_again(tmp_path):
    # A kill between the call-log line and the cache write: resume restores the entry from the log.
    log = JsonlLog(tmp_path / "calls.jsonl")
    backend = ScriptedBackend(reply_fn=lambda r: "Answer: 4")
    cfg = {"provider": "scripted", "model": "m", "cache": {"enabled": True, "path": str(tmp_path / "c.sqlite")}}
    engines = EngineSet({"forward": cfg}, scripted=backend, call_log=log)
    request = LLMRequest.chat("2 + 2?", tag="forward:solve")
    asyncio.run(engines["forward"].acomplete(request))
    (record,) = records(tmp_path / "calls.jsonl")
    cache = RequestCache(tmp_path / "c.sqlite", "default")
    cache._db.execute("DELETE FROM replies")  # as if the process died before the cache write
    assert cache.get(record["cache_key"]) is None

    again = EngineSet({"forward": cfg}, scripted=backend)
    assert again.backfill_cache([record]) == 1 and again.backfill_cache([record]) == 0
    reply = asyncio.run(again["forward"].acomplete(request))
    assert reply.cache_hit and reply.text == "Answer: 4" and len(backend.requests) == 1
