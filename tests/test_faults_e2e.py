"""Whole experiments over HTTP against a fault-injecting local server: 3 tasks x 3 credit strategies all complete,
every answered call is in calls.jsonl, and every fault is an event of the run."""
from __future__ import annotations

import collections
import json
import zlib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.run import run_experiment
from provider_server import FaultMix
from runs_cli import records
from wire_model import wire_reply

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
TASKS = ("bbh_object_counting", "gsm8k", "hotpotqa_rag")
CREDITS = ("backprop", "semantic", "trace")


def _messages_key(messages: list) -> str:
    return json.dumps([[m["role"], m["content"]] for m in messages], sort_keys=True)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("credit", CREDITS)
def test_a_run_under_a_mild_fault_mix_completes_and_loses_nothing(server, tmp_path, task, credit, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.reply_fn = wire_reply
    server.faults = FaultMix(rate_429=0.05, rate_500=0.02, rate_drop=0.01, rate_truncated=0.05, rate_empty=0.02,
                             retry_after=0.01, seed=zlib.crc32(f"{task}:{credit}".encode()) % 1000)
    overrides = ["engine=local_openai", f"engine.base_url={server.openai_base_url}", "engine.model=local-test",
                 "engine.cache.enabled=false", "engine.max_retries=3", "+engine.backoff_base=0.005",
                 "+engine.backoff_max=0.02", f"task={task}", f"credit={credit}", "optimizer=tgd",
                 "trainer.max_steps=2", "trainer.batch_size=2", "trainer.val_size=6", "trainer.test_size=4",
                 "trainer.progress=false", f"run_dir={tmp_path / 'run'}"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    try:
        summary = run_experiment(cfg)
    finally:
        server.faults = None
    run = tmp_path / "run"
    assert summary["status"] == "completed", summary["stop_reason"]
    outcomes = server.outcomes()
    faults = sum(n for kind, n in outcomes.items() if kind != "reply")
    assert faults > 0, outcomes  # the mix really reached this run

    calls = records(run / "calls.jsonl")
    answered = collections.Counter(_messages_key(r["json"]["messages"]) for r in server.answered())
    logged = collections.Counter(_messages_key(c["messages"]) for c in calls if c["error"] is None)
    assert logged == answered  # every answered call is in calls.jsonl, once
    assert all(c["phase"] in ("forward", "credit", "optimizer", "validation", "test") and c["request_id"] for c in calls)

    events = records(run / "events.jsonl")
    retries = [e for e in events if e["kind"] == "retry"]
    failed = [e for e in events if e["kind"] == "call_failed"]
    assert len(retries) + len(failed) == faults  # each fault: a retry, or the last attempt of a failed call
    assert all(e["reason"] and e["attempt"] >= 1 and e["role"] for e in retries + failed)
    assert summary["failures"]["calls"]["retries"] and sum(summary["failures"]["calls"]["retries"].values()) == len(retries)
    assert (run / "summary.json").exists() and json.loads((run / "summary.json").read_text())["status"] == "completed"
