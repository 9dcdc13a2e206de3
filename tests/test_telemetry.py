"""Telemetry: spans.jsonl always; OTLP/HTTP spans and MLflow params/metrics read back from a real `mlflow server`."""
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.extras import install_extra
from experiments.publish import publish_run
from experiments.run import run_experiment

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tel") / "run"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["trainer.max_steps=2", "trainer.val_size=10", "trainer.test_size=10",
                                           "trainer.progress=false", f"run_dir={path}"])
    run_experiment(cfg)
    return path


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite store; bounded start-up wait; killed at the end."""
    for extra in ("mlflow", "telemetry"):
        if reason := install_extra(extra):
            pytest.skip(reason)
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{home}/mlflow.db", "--default-artifact-root", str(home / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=home, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(home / 'server.log').read_text()[-2000:]}")
                time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the uvicorn worker goes too
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def read_spans(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "spans.jsonl").read_text().splitlines()]


def test_spans_jsonl_is_always_written_as_a_run_step_phase_call_tree(run_dir):
    publish_run(run_dir, {})  # nothing configured: the file only
    spans = read_spans(run_dir)
    calls = [json.loads(l) for l in (run_dir / "calls.jsonl").read_text().splitlines()]
    by_id = {s["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent_span_id"] is None]
    assert len(roots) == 1 and roots[0]["name"].startswith("run ")
    chats = [s for s in spans if s["name"].startswith("chat ")]
    assert len(chats) == len(calls)
    for s in chats:
        phase = by_id[s["parent_span_id"]]
        step = by_id[phase["parent_span_id"]]
        assert phase["name"] == s["attributes"]["textgrad.phase"] and step["name"] == f"step {s['attributes']['textgrad.step']}"
        assert step["parent_span_id"] == roots[0]["span_id"]
        assert s["start_time_unix_nano"] <= s["end_time_unix_nano"]
    a = chats[0]["attributes"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "sim"
    assert a["gen_ai.request.model"] == "sim-1" and isinstance(a["gen_ai.usage.input_tokens"], int)
    assert {s["attributes"]["textgrad.phase"] for s in chats} >= {"forward", "credit", "optimizer", "validation", "test"}
    opt = next(s for s in chats if s["attributes"]["textgrad.phase"] == "optimizer")
    assert opt["attributes"]["textgrad.parameter_ids"] == ["instruction"]
    assert sum(s["attributes"]["gen_ai.usage.input_tokens"] for s in chats) == sum(c["usage"]["input_tokens"] for c in calls)
    publish_run(run_dir, {})
    assert read_spans(run_dir) == spans  # same run, same ids


def test_unreachable_collector_costs_one_warning_and_an_event(run_dir, caplog):
    port = free_port()  # nothing listens there
    cfg = {"telemetry": {"otlp_endpoint": f"http://127.0.0.1:{port}", "timeout_s": 2}}
    if install_extra("telemetry"):
        pytest.skip("telemetry extra unavailable")
    with caplog.at_level(logging.WARNING):
        publish_run(run_dir, cfg)  # must not raise
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "experiments.publish"]
    assert len(warnings) == 1 and "OTLP export" in warnings[0].getMessage()
    events = [json.loads(l) for l in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "publish_failed" and events[-1]["target"] == "otlp"
    assert (run_dir / "spans.jsonl").exists()


def test_spans_and_metrics_reach_a_real_mlflow_server(run_dir, mlflow_server):
    from mlflow import MlflowClient
    publish_run(run_dir, {"telemetry": {"otlp_endpoint": mlflow_server},
                          "mlflow": {"tracking_uri": mlflow_server, "experiment": "textgrad-test"}})
    events = [json.loads(l) for l in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events[-2:]] == ["mlflow_logged", "telemetry_exported"], events[-2:]
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("textgrad-test")
    summary = json.loads((run_dir / "summary.json").read_text())
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.data.params["credit"] == "backprop" and mrun.data.params["task"] == "bbh_object_counting"
    assert mrun.data.metrics["val_final"] == pytest.approx(summary["val"]["final"])
    assert mrun.data.metrics["test_initial"] == pytest.approx(summary["test"]["initial"])
    assert mrun.data.metrics["usage_calls"] == summary["usage"]["calls"]
    metrics = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    history = client.get_metric_history(mrun.info.run_id, "val_score")
    assert sorted((h.step, h.value) for h in history) == sorted((m["step"], m["val_score"]) for m in metrics)
    spans = read_spans(run_dir)
    (trace,) = client.search_traces(locations=[exp.experiment_id])
    got = {s.span_id: s for s in trace.data.spans}
    assert set(got) == {s["span_id"] for s in spans}  # every span, with the ids of spans.jsonl
    chat = next(s for s in spans if s["name"].startswith("chat ") and s["attributes"]["textgrad.phase"] == "credit")
    back = got[chat["span_id"]]
    assert back.parent_id == chat["parent_span_id"]
    for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens", "textgrad.phase", "textgrad.step", "textgrad.role"):
        assert back.attributes[key] == chat["attributes"][key], key
