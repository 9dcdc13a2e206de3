"""Progress: one line per sweep job (status, step, best validation, cost so far); step lines and an eval bar."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from experiments.progress import ProgressReporter, main, sweep_lines

ROOT = Path(__file__).resolve().parents[1]


def test_one_line_per_job_of_a_real_sweep(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TEXTGRAD_SWEEP_ID", None)
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "-m", "trainer.seed=0,1", "trainer.max_steps=2",
                           "trainer.val_size=10", "trainer.test_size=10", "trainer.progress=false"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sweep,) = (tmp_path / "runs").glob("sweep_*")
    lines = sweep_lines(sweep)
    index = json.loads((sweep / "index.json").read_text())
    assert len(lines) == len(index["jobs"]) == 2
    for line, job in zip(lines, index["jobs"]):
        best = [json.loads(l) for l in (tmp_path / job["run_dir"] / "metrics.jsonl").read_text().splitlines()][-1]["best_val"]
        assert line.startswith(f"{job['job']:03d} completed") and "step 2/2" in line
        assert f"best val {best:.3f}" in line and f"trainer.seed={job['job']}" in line and "cost $0.0000" in line


def test_a_running_job_shows_its_cost_so_far(tmp_path):
    run = tmp_path / "runs" / "sweep_x" / "000_t_c_o"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "best_val": 0.5}) + "\n")
    (run / "calls.jsonl").write_text("".join(json.dumps({"cost_usd": c}) + "\n" for c in (0.25, 0.5)))
    (run.parent / "index.json").write_text(json.dumps({"jobs": [{"job": 0, "status": "running", "overrides": ["a=1"],
                                                                  "run_dir": "runs/sweep_x/000_t_c_o"}]}))
    (line,) = sweep_lines(run.parent)
    assert line.startswith("000 running") and "step 1" in line and "best val 0.500" in line and "cost $0.7500" in line


def test_not_a_sweep_dir_exits_2(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no index.json" in capsys.readouterr().err


def test_reporter_prints_step_lines_and_a_bar_for_long_evaluations():
    out = io.StringIO()
    rep = ProgressReporter(Console(file=out, force_terminal=True, width=100), max_steps=3, bar_min_total=10)
    rep.on_eval("validation", 0, 50)
    assert rep._bar is not None  # a bar while 50 examples are scored
    rep.on_eval("validation", 50, 50)
    assert rep._bar is None
    rep.on_step({"step": 1, "decision": "accepted", "val_score": 0.61, "best_val": 0.61}, cost_usd=0.0123)
    rep.close()
    assert "step 1/3 accepted: val 0.610 best 0.610 cost $0.0123" in out.getvalue()
    job_out = io.StringIO()
    job = ProgressReporter(Console(file=job_out, width=100), job=4)
    job.on_eval("validation", 0, 500)
    assert job._bar is None  # parallel jobs print lines only: bars from several processes would garble
    job.on_step({"step": 2, "decision": "reverted", "val_score": 0.4, "best_val": 0.6})
    assert job_out.getvalue().startswith("[job 004] step 2 reverted: val 0.400 best 0.600")
