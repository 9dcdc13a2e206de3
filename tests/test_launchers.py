"""Real 2-job sweeps through each Hydra launcher's example config: joblib, submitit_local, and Ray (local instance)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.extras import install_extra

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("config.yaml", "run.json", "metrics.jsonl", "calls.jsonl", "parameters.jsonl", "checkpoint.json",
             "summary.json")
LAUNCHERS = [("credit_sweep_joblib", "launchers", "JoblibLauncher"), ("credit_sweep_submitit", "launchers", "LocalLauncher"),
             ("credit_sweep_ray", "ray", "RayLauncher")]


def experiment_override(name: str) -> str:
    defaults = yaml.safe_load((ROOT / "configs" / "config.yaml").read_text())["defaults"]
    listed = any(isinstance(d, dict) and any(k.split(" ")[-1] == "experiment" for k in d) for d in defaults)
    return f"experiment={name}" if listed else f"+experiment={name}"


@pytest.mark.parametrize("experiment,extra,launcher", LAUNCHERS)
def test_two_job_seed_sweep_through_the_launcher(experiment, extra, launcher, tmp_path):
    if reason := install_extra(extra):
        pytest.skip(reason)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TEXTGRAD_SWEEP_ID", None)  # a fresh sweep id for this sweep
    # The example config sweeps 3 credit strategies x 2 seeds; the command line narrows it to one strategy.
    cmd = [sys.executable, "-m", "experiments.run", "-m", experiment_override(experiment), "credit=backprop",
           "trainer.seed=0,1", "trainer.max_steps=1", "trainer.val_size=10", "trainer.test_size=10",
           "trainer.progress=false"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    (sweep,) = list((tmp_path / "runs").glob("sweep_*"))  # one sweep directory for both jobs
    used = yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["launcher"]["_target_"]
    assert used.endswith(launcher), used  # the jobs went through that launcher, not Hydra's basic one
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "run.json").exists())
    assert [p.name[:3] for p in jobs] == ["000", "001"]
    for job, path in enumerate(jobs):
        for name in RUN_FILES:
            assert (path / name).exists(), (path, name)
        summary = json.loads((path / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["steps"] == 1
        assert yaml.safe_load((path / "config.yaml").read_text())["trainer"]["seed"] == job
        assert json.loads((path / "run.json").read_text())["job"] == job
    index = json.loads((sweep / "index.json").read_text())
    assert [j["job"] for j in index["jobs"]] == [0, 1]
    for j, path in zip(index["jobs"], jobs):
        assert j["status"] == "completed" and f"trainer.seed={j['job']}" in j["overrides"]
        assert (tmp_path / j["run_dir"]).resolve() == path.resolve()
        summary = json.loads((path / "summary.json").read_text())
        assert j["val"] == summary["val"] and j["test"] == summary["test"]
