"""Every reproduction config (configs/experiment/repro/) composes, records its target, estimates, and runs one step
on the simulator; docs/reproduce.md lists every one of them."""
from pathlib import Path

import pytest

from experiments.estimate import compose, estimate
from experiments.estimate_target import TargetSection, parse_target
from experiments.run import run_experiment
from textgrad_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
REPRO = sorted(p.stem for p in (ROOT / "configs" / "experiment" / "repro").glob("*.yaml"))
TINY = ["trainer.max_steps=1", "trainer.val_size=3", "trainer.test_size=3"]


def test_the_published_settings_are_all_there():
    assert {"textgrad_object_counting", "textgrad_word_sorting", "textgrad_gsm8k", "trace_bbh",
            "trace_optoprime_vs_textgrad", "gepa_hotpotqa"} <= set(REPRO)


@pytest.mark.parametrize("name", REPRO)
def test_repro_config_composes_with_a_complete_target(name):
    text = (ROOT / "configs" / "experiment" / "repro" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    plain = compose([f"experiment=repro/{name}"])
    target = parse_target(plain["target"])
    assert isinstance(target, TargetSection)
    assert target.number == "unconfirmed" or isinstance(target.number, float)
    # The target says what the config does: same batch size, same steps, same protocol where the task has one.
    assert target.batch_size == plain["trainer"]["batch_size"]
    assert plain["task"].get("protocol", target.protocol) == target.protocol
    assert plain["engine"]["provider"] != "sim"  # a reproduction names real models; the estimate swaps in the simulator


@pytest.mark.parametrize("name", REPRO)
def test_repro_config_estimates_and_runs_one_step_on_the_simulator(name, tmp_path):
    overrides = [f"experiment=repro/{name}", *TINY]
    est = estimate(overrides, workdir=tmp_path / "estimate")
    assert est.status == "completed" and est.steps == 1
    assert est.total.calls > 0 and est.total.unpriced_calls == 0  # every model of a repro config is priced
    assert 0 < est.total.cost_low_usd <= est.total.cost_high_usd
    plain = compose([*overrides, "engine=sim", "trainer.progress=false", f"run_dir={tmp_path / 'run'}"])
    plain.pop("target")  # bookkeeping only; see test_the_run_validator_accepts_a_target_block
    summary = run_experiment(plain)
    assert summary["status"] == "completed" and summary["steps"] == 1 and summary["simulated"]
    assert summary["usage"]["calls"] == est.total.calls


def test_the_run_validator_accepts_a_target_block():
    """`target` is a top-level key of a run's config (experiments/validate.py), checked as a TargetSection."""
    from experiments.validate import config_problems

    plain = compose(["experiment=repro/textgrad_object_counting", "engine=sim"])
    assert config_problems(plain) == []
    plain["target"]["batch_size"] = 0
    assert any("target.batch_size" in p for p in config_problems(plain))


def test_a_bad_target_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"target\.number"):
        parse_target({"paper": "p", "table": "t", "number": "about 90", "split": "s", "batch_size": 3,
                      "protocol": "textgrad"})


def test_docs_reproduce_lists_every_repro_config():
    doc = (ROOT / "docs" / "reproduce.md").read_text()
    for name in REPRO:
        assert f"python -m experiments.run experiment=repro/{name}" in doc
        assert f"python -m experiments.estimate experiment=repro/{name}" in doc
