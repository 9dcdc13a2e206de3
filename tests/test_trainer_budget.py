"""A budget that runs out mid-step never leaves an unvalidated parameter in place; test is scored once when nothing changed."""
import json
from pathlib import Path

from hydra import compose, initialize_config_dir

from experiments.run import run_experiment
from tasks.bbh_object_counting import INITIAL_INSTRUCTION

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def run(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["trainer.progress=false", f"run_dir={tmp_path}", *overrides])
    return run_experiment(cfg)


def test_budget_exhausted_during_validation_reverts_the_unvalidated_update(tmp_path):
    # 100 initial validation calls + step 1 (3 forward, 6 credit, 1 optimizer) leaves 40 of the next 100 validation calls.
    summary = run(tmp_path, "budget.max_calls=150")
    assert summary["status"] == "stopped" and "max_calls=150" in summary["stop_reason"]
    assert summary == json.loads((tmp_path / "summary.json").read_text()) | {"run_dir": summary["run_dir"]}
    assert summary["parameters"]["instruction"]["value"] == INITIAL_INSTRUCTION
    assert summary["usage"]["calls"] == 150 and summary["test"] == {"initial": None, "final": None}
    versions = [json.loads(l) for l in (tmp_path / "parameters.jsonl").read_text().splitlines()]
    assert [v["reason"] for v in versions] == ["initial", "tgd update",
                                               "revert: budget exhausted before the step finished"]
    events = [json.loads(l) for l in (tmp_path / "events.jsonl").read_text().splitlines()]
    interrupted, stopped = [e for e in events if e["kind"] in ("step_interrupted", "run_stopped")]
    assert interrupted["reverted"] == ["instruction"] and interrupted["simulated"] and interrupted["step"] == 1
    assert stopped["status"] == "stopped" and "max_calls=150" in stopped["reason"]
    checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
    assert checkpoint["step"] == 0  # the last completed step: a resume with a larger budget starts at step 1
    assert checkpoint["parameters"]["instruction"]["value"] == INITIAL_INSTRUCTION
    for line in (tmp_path / "calls.jsonl").read_text().splitlines():
        json.loads(line)  # the call log stays parseable


def test_test_split_is_scored_once_when_no_update_was_accepted(tmp_path):
    summary = run(tmp_path, "trainer.max_steps=0", "trainer.test_size=20")
    assert summary["test"]["initial"] == summary["test"]["final"]
    assert summary["phases"]["test"]["calls"] == 20
