"""Fault matrix: whole runs over HTTP against the fault-injecting server and a hostile optimizer model, on 3 tasks x
3 credit strategies (and the joint optimizer) -> 0 crashed runs, 0 corrupted parameters, 0 lost log records,
0 unexplained failures."""
from __future__ import annotations

import collections
import json
import zlib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.run import run_experiment
from provider_server import FaultMix
from reliability.hostile import HOSTILE_MARK, corrupted_versions, hostile_reply, unexplained_hostile
from reliability.isolation import scan
from runs_cli import records

CONFIGS = str(Path(__file__).resolve().parents[2] / "configs")
TASKS = ("bbh_object_counting", "gsm8k", "hotpotqa_rag")
CREDITS = ("backprop", "semantic", "trace")
FAST = {("gsm8k", "backprop", "tgd"), ("bbh_object_counting", "trace", "joint")}
COMBOS = [(t, c, "tgd") for t in TASKS for c in CREDITS] + [(t, "trace", "joint") for t in TASKS]


def _case(task: str, credit: str, optimizer: str):
    marks = [] if (task, credit, optimizer) in FAST else [pytest.mark.reliability_full]
    return pytest.param(task, credit, optimizer, marks=marks, id=f"{task}-{credit}-{optimizer}")


def _call_key(messages: list, reply: str) -> str:
    # The last user turn and the reply: the provider adds a schema system message on the wire for JSON requests.
    users = [m["content"] for m in messages if m["role"] == "user"]
    return json.dumps([users[-1] if users else None, reply])


def _faults_met(requests: list[dict]) -> dict[str, int]:
    kinds = collections.Counter()
    for r in requests:
        if r["outcome"] == "status":
            kinds[f"http_{r['status']}"] += 1
        elif r["outcome"] != "reply":
            kinds[r["outcome"]] += 1
    return dict(kinds)


@pytest.mark.parametrize("task, credit, optimizer", [_case(*c) for c in COMBOS])
def test_a_run_under_faults_and_hostile_replies_loses_nothing(server, tmp_path, monkeypatch, figures, task, credit,
                                                              optimizer):
    monkeypatch.chdir(tmp_path)
    server.reply_fn = hostile_reply
    server.faults = FaultMix(rate_429=0.06, rate_500=0.03, rate_503=0.02, rate_drop=0.02, rate_truncated=0.04,
                             rate_empty=0.03, retry_after=0.01,
                             seed=zlib.crc32(f"{task}:{credit}:{optimizer}".encode()) % 1000)
    run = tmp_path / "run"
    overrides = ["engine=local_openai", f"engine.base_url={server.openai_base_url}", "engine.model=local-test",
                 "engine.cache.enabled=false", "engine.max_retries=3", "+engine.backoff_base=0.005",
                 "+engine.backoff_max=0.02", f"task={task}", f"credit={credit}", f"optimizer={optimizer}",
                 "trainer.max_steps=3", "trainer.batch_size=2", "trainer.val_size=6", "trainer.test_size=4",
                 "trainer.progress=false", f"run_dir={run}"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    crash = None
    try:
        summary = run_experiment(cfg)
    except Exception as exc:  # noqa: BLE001 - a crash is what this test counts
        crash, summary = f"{type(exc).__name__}: {exc}", {"status": "crashed"}
    finally:
        server.faults = None
    requests = list(server.requests)
    faults = _faults_met(requests)
    calls = records(run / "calls.jsonl") if (run / "calls.jsonl").exists() else []
    events = records(run / "events.jsonl") if (run / "events.jsonl").exists() else []
    parameters = records(run / "parameters.jsonl") if (run / "parameters.jsonl").exists() else []

    answered = collections.Counter(_call_key(r["json"]["messages"], r["reply"]) for r in requests if r["outcome"] == "reply")
    logged = collections.Counter(_call_key(c["messages"], c["reply"]) for c in calls if c["error"] is None)
    lost = sum((answered - logged).values()) + sum((logged - answered).values())  # missing, or logged twice
    retries = [e for e in events if e["kind"] == "retry"]
    failed_events = {e["request_id"] for e in events if e["kind"] == "call_failed"}
    failed_calls = [c for c in calls if c["error"] is not None]
    fault_count = sum(faults.values())
    unexplained = abs(fault_count - len(retries) - sum(e["kind"] == "call_failed" for e in events))
    unexplained += sum(c["request_id"] not in failed_events for c in failed_calls)
    unexplained += len(unexplained_hostile(calls, events))
    corrupted = corrupted_versions(parameters, calls)
    hostile = sum(c["phase"] == "optimizer" and HOSTILE_MARK in (c.get("reply") or "") for c in calls)
    isolation = scan(run) if calls else {"leaks": []}
    figures.add("faults", "runs", {
        "task": task, "credit": credit, "optimizer": optimizer, "status": summary["status"],
        "faults": {**faults, "hostile_optimizer_reply": hostile}, "calls_logged": len(calls),
        "failed_calls": len(failed_calls), "versions": sum(p["version"] > 0 for p in parameters),
        "crashed": int(summary["status"] != "completed"), "corrupted": len(corrupted), "lost": lost,
        "unexplained": unexplained})
    figures.add("isolation", "run_dirs", str(run))

    assert crash is None and summary["status"] == "completed", crash or summary.get("stop_reason")
    assert fault_count > 0 and hostile > 0, (faults, hostile)  # the faults and the hostile model reached this run
    assert lost == 0, "answered calls missing from calls.jsonl (or logged twice)"
    assert unexplained == 0, (faults, len(retries), failed_events, unexplained_hostile(calls, events))
    assert corrupted == [], corrupted
    assert isolation["leaks"] == []
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
