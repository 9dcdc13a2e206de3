"""Every configs/experiment/*.yaml composes and runs one step on the simulator; an unknown experiment is a clear error."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from experiments.extras import install_extra
from experiments.run import run_experiment

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
# Keeps each smoke run to one step on a handful of examples.
FAST = ["trainer.max_steps=1", "trainer.val_size=4", "trainer.test_size=4", "trainer.progress=false"]


def experiment_override(name: str) -> str:
    """`experiment=<name>` once configs/config.yaml lists the group in its defaults, `+experiment=<name>` before."""
    defaults = yaml.safe_load((CONFIGS / "config.yaml").read_text())["defaults"]
    listed = any(isinstance(d, dict) and any(k.split(" ")[-1] == "experiment" for k in d) for d in defaults)
    return f"experiment={name}" if listed else f"+experiment={name}"


def test_every_experiment_file_is_a_global_delta():
    assert len(EXPERIMENTS) >= 4
    for name in EXPERIMENTS:
        text = (CONFIGS / "experiment" / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_"), name
        body = yaml.safe_load(text) or {}
        allowed = {"defaults", "task", "credit", "optimizer", "search", "trainer", "engine", "engines", "budget", "hydra"}
        assert set(body) <= allowed, (name, set(body) - allowed)


def ensure_launcher(name: str) -> None:
    """An experiment file that picks a launcher plugin needs its extra (installed here when missing)."""
    text = (CONFIGS / "experiment" / f"{name}.yaml").read_text()
    if "override /hydra/launcher" in text:
        if reason := install_extra("ray" if "launcher: ray" in text else "launchers"):
            pytest.skip(reason)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_runs_one_step(name, tmp_path):
    ensure_launcher(name)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[experiment_override(name), *FAST, f"run_dir={tmp_path / name}"])
    delta = yaml.safe_load((CONFIGS / "experiment" / f"{name}.yaml").read_text())
    for group in ("task", "credit", "optimizer", "search"):  # the experiment's choices won over the defaults
        for d in delta.get("defaults", []):
            if f"override /{group}" in d:
                assert cfg[group].name == d[f"override /{group}"], (name, group)
    summary = run_experiment(cfg)
    assert summary["simulated"] is True and summary["steps"] == 1
    written = json.loads((tmp_path / name / "summary.json").read_text())
    assert written["task"] == cfg.task.name and written["credit"] == cfg.credit.name
    assert written["val"]["initial"] is not None and written["val"]["final"] is not None


def test_unknown_experiment_is_one_clear_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "experiments.run", experiment_override("no_such_thing"),
                           f"run_dir={tmp_path}/r"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    # names the bad choice and lists the experiments there are (the preflight's line, or Hydra's own message)
    assert "no_such_thing" in proc.stderr and "demo" in proc.stderr and "trace_vs_backprop" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()
