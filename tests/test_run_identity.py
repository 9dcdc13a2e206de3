"""One run, one directory: sweeps, simultaneous starts, refusing an existing run; same config -> same requests."""
from __future__ import annotations

import contextlib
import io
import json

from experiments.ls import main as list_runs
from runs_cli import FAST, popen_cli, records, run_cli, run_dirs


def test_a_three_seed_sweep_gives_three_complete_run_directories_and_an_index(tmp_path):
    proc = run_cli(tmp_path, "-m", "trainer.seed=0,1,2", "trainer.max_steps=2", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sweep,) = list((tmp_path / "runs").glob("sweep_*"))
    dirs = run_dirs(sweep)
    assert len(dirs) == 3 and [d.name[:3] for d in dirs] == ["000", "001", "002"]
    seeds = []
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert [m["step"] for m in records(d / "metrics.jsonl")] == [0, 1, 2]  # one run's records only
        seeds.append(json.loads((d / "run.json").read_text())["overrides"])
        assert (d / "config.yaml").read_text().startswith("# SIMULATION")
    assert sorted(next(x for x in o if x.startswith("trainer.seed=")) for o in seeds) == [
        "trainer.seed=0", "trainer.seed=1", "trainer.seed=2"]
    index = json.loads((sweep / "index.json").read_text())
    assert [j["job"] for j in index["jobs"]] == [0, 1, 2]
    assert all(j["status"] == "completed" and j["run_dir"].endswith(d.name) for j, d in zip(index["jobs"], dirs))
    assert all(j["val"]["final"] is not None for j in index["jobs"])


def test_two_runs_started_in_the_same_second_get_two_directories(tmp_path):
    procs = [popen_cli(tmp_path, "trainer.max_steps=1", *FAST) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    dirs = run_dirs(tmp_path / "runs")
    assert len(dirs) == 2
    for d in dirs:
        assert json.loads((d / "summary.json").read_text())["status"] == "completed"
        assert [m["step"] for m in records(d / "metrics.jsonl")] == [0, 1]


def test_an_existing_run_directory_is_refused_and_left_as_it_was(tmp_path):
    first = run_cli(tmp_path, f"run_dir={tmp_path / 'mine'}", "trainer.max_steps=1", *FAST)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in (tmp_path / "mine").iterdir()}
    again = run_cli(tmp_path, f"run_dir={tmp_path / 'mine'}", "trainer.max_steps=1", *FAST)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    (line,) = again.stderr.strip().splitlines()
    assert line.startswith("error:") and "already holds a run" in line and "resume=" in line
    assert {p.name: p.read_bytes() for p in (tmp_path / "mine").iterdir()} == before


def _messages(run_dir) -> list:
    calls = records(run_dir / "calls.jsonl")
    return sorted(json.dumps([c["messages"], c["sample_index"], c["role"]]) for c in calls)


def test_the_same_config_sends_identical_requests_alone_and_in_either_order_of_a_sweep(tmp_path):
    common = ("trainer.max_steps=2", "task=layered", "trainer.batch_size=2", *FAST)
    alone = run_cli(tmp_path / "a", "credit=trace", "optimizer=tgd", *common)
    forward = run_cli(tmp_path / "b", "-m", "credit=trace,backprop,semantic", "optimizer=tgd", *common)
    backward = run_cli(tmp_path / "c", "-m", "credit=semantic,backprop,trace", "optimizer=tgd", *common)
    for proc in (alone, forward, backward):
        assert proc.returncode == 0, proc.stderr[-2000:]

    def requests(root, credit):
        (d,) = [d for d in run_dirs(root) if f"_{credit}_tgd" in d.name]
        return _messages(d)

    reference = requests(tmp_path / "a", "trace")
    assert reference and requests(tmp_path / "b", "trace") == reference == requests(tmp_path / "c", "trace")
    # the first job of one sweep is the last of the other: its requests do not depend on what ran before either
    assert requests(tmp_path / "b", "semantic") == requests(tmp_path / "c", "semantic")


def test_the_listing_shows_each_run_with_its_status(tmp_path):
    ok = run_cli(tmp_path, "trainer.max_steps=1", *FAST)
    stopped = run_cli(tmp_path, "trainer.max_steps=1", "budget.max_calls=5", *FAST)
    assert ok.returncode == 0 and stopped.returncode == 0, stopped.stderr[-2000:]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert list_runs([str(tmp_path / "runs")]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["status", "run"] and len(lines) == 3
    assert sorted(line.split()[0] for line in lines[1:]) == ["completed", "stopped"]
    assert all("(SIMULATION)" in line for line in lines[1:])


def test_call_records_join_with_steps_feedback_and_parameter_versions(tmp_path):
    proc = run_cli(tmp_path, f"run_dir={tmp_path / 'run'}", "trainer.max_steps=2", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "run"
    calls = {c["request_id"]: c for c in records(run / "calls.jsonl")}
    run_id = json.loads((run / "run.json").read_text())["run_id"]
    assert all(c["run_id"] == run_id and c["phase"] for c in calls.values())
    assert {c["split"] for c in calls.values() if c["phase"] == "test"} == {"test"}
    assert {c["split"] for c in calls.values() if c["phase"] == "forward"} == {"train"}
    assert all(c["example_id"] for c in calls.values() if c["phase"] in ("forward", "validation", "test"))
    gradients = records(run / "gradients.jsonl")
    assert gradients and all(g["credit_call_ids"] for g in gradients)
    for g in gradients:
        assert {(calls[i]["phase"], calls[i]["step"]) for i in g["credit_call_ids"]} == {("credit", g["step"])}
    updates = [v for v in records(run / "parameters.jsonl") if v["reason"].startswith("tgd")]
    assert updates and all(v["call_ids"] for v in updates)
    for v in updates:
        assert all(calls[i]["phase"] == "optimizer" and calls[i]["step"] == v["step"] and
                   calls[i]["tag"].endswith(":instruction") for i in v["call_ids"])
