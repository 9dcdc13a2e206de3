"""Every credit strategy x optimizer pair that fits runs end to end on the demo task from a config override."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.factory import CREDIT, OPTIMIZERS, build_credit, build_optimizer
from experiments.run import run_experiment
from textgrad_core.errors import ConfigError

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def compatible_pairs():
    pairs = []
    for c in CREDIT:
        for o in OPTIMIZERS:
            try:
                build_optimizer({"name": o}, build_credit({"name": c}))
            except ConfigError:
                continue
            pairs.append((c, o))
    return pairs


PAIRS = compatible_pairs()
CALL_FREE = {"bootstrap"}  # keeps successful traces as demos without asking any model


def test_the_expected_pairs_fit():
    assert {("backprop", "tgd"), ("semantic", "tgd"), ("trace", "tgd"), ("outcome", "tgd"), ("adaptive", "tgd"),
            ("trace", "joint"), ("adaptive", "joint")} <= set(PAIRS)
    assert ("backprop", "joint") not in PAIRS and ("outcome", "joint") not in PAIRS


@pytest.mark.parametrize("credit,optimizer", PAIRS)
def test_pair_runs_on_the_simulator(credit, optimizer, tmp_path):
    overrides = [f"credit={credit}", f"optimizer={optimizer}", "trainer.max_steps=3", "trainer.val_size=20",
                 "trainer.test_size=10", "trainer.progress=false", f"run_dir={tmp_path}"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    summary = run_experiment(cfg)
    assert summary["credit"] == credit and summary["optimizer"] == optimizer and summary["simulated"]
    assert summary["steps"] == 3
    assert summary["val"]["final"] >= summary["val"]["initial"]  # validation gating never lets it get worse
    phases = summary["phases"]
    expected_credit_calls = credit in ("backprop", "semantic")
    assert (phases["credit"]["calls"] > 0) == expected_credit_calls
    assert (phases["optimizer"]["calls"] > 0) == (optimizer not in CALL_FREE) and phases["forward"]["calls"] == 9
    assert (tmp_path / "summary.json").exists()
