"""Credit strategies and optimizers by name and by import path, from the API and from Hydra configs."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import textgrad_core as tc
from experiments import factory
from textgrad_core import registry

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A credit strategy and an optimizer that live outside the repository."""
from textgrad_core.credit import PER_PARAMETER, CreditResult, ParameterFeedback
from textgrad_core.optimizers.base import UpdateEvent


class ShoutCredit:
    name = "shout"
    kind = PER_PARAMETER

    def __init__(self, word="LOUDER"):
        self.word = word

    async def assign(self, traces, params, engine):
        feedback = {p.id: [ParameterFeedback(t.example_id, self.word) for t in traces] for p in params}
        return CreditResult(self.name, self.kind, feedback=feedback, scores={t.example_id: t.score for t in traces})


class AppendOptimizer:
    name = "append"
    accepts = frozenset({PER_PARAMETER})

    def __init__(self, suffix="!"):
        self.suffix = suffix

    async def step(self, params, credit, engine, step, events=None):
        out = []
        for p in params:
            words = " ".join(f.text for f in credit.for_parameter(p))
            old = p.version
            entry = p.update(f"{p.value} {words}{self.suffix}", step, reason="append")
            out.append(UpdateEvent(p.id, True, old, entry.version, reason="append"))
        return out


class NotACredit:
    name = "nope"
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    pkg = tmp_path / "plug" / "my_plugins"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "parts.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    return tmp_path / "plug"


def test_every_builtin_is_reachable_by_name_through_the_one_registry():
    assert set(factory.CREDIT) == {"backprop", "semantic", "trace", "outcome", "adaptive"} <= set(tc.credit_strategies())
    assert {"tgd", "joint", "opro"} <= set(factory.OPTIMIZERS) == set(tc.optimizer_names())
    assert factory.CREDIT["trace"].__name__ == "TracePropagation" and factory.OPTIMIZERS["tgd"] is tc.TGD
    assert tc.credit_strategy("trace", value_limit=50).value_limit == 50
    assert isinstance(tc.optimizer("opro", top_k=3), tc.OPRO)


def test_plugins_by_import_path_from_the_api_and_from_configs(plugin_dir):
    credit = tc.credit_strategy("my_plugins.parts.ShoutCredit", word="HEY")
    assert credit.word == "HEY"
    built = factory.build_credit({"_target_": "my_plugins.parts:ShoutCredit", "name": "label"})
    opt = factory.build_optimizer({"_target_": "my_plugins.parts.AppendOptimizer", "suffix": "?"}, built)
    assert opt.suffix == "?"
    p = tc.Parameter("Be brief.", role="instruction", name="p")
    loss = tc.MetricLoss(lambda a, e: tc.MetricResult(score=0.0, feedback="no"))(tc.join(p, "x"), None)
    result = loss.backward(credit=credit)
    assert [f.text for f in result.feedback["p"]] == ["HEY"]


@pytest.mark.parametrize("cfg, message", [
    ({"name": "backprob"}, "Unknown credit strategy 'backprob'. Known: adaptive, backprop"),
    ({"_target_": "no_such_pkg.Credit"}, "Cannot import credit strategy 'no_such_pkg.Credit'"),
    ({"_target_": "my_plugins.parts.Missing"}, "Cannot import credit strategy 'my_plugins.parts.Missing'"),
    ({"_target_": "my_plugins.parts.NotACredit"}, "is not a credit strategy: it lacks assign, kind"),
    ({"_target_": "my_plugins.parts.ShoutCredit", "volume": 3}, "Invalid options for credit strategy 'my_plugins.parts.ShoutCredit': got an unexpected keyword argument 'volume'. It accepts: word"),
    ({"name": "backprop", "skip_perfectly": True}, "'skip_perfectly'. It accepts: skip_perfect, value_limit, max_tokens"),
])
def test_credit_config_mistakes_are_one_clear_config_error(plugin_dir, cfg, message):
    with pytest.raises(tc.ConfigError) as info:
        factory.build_credit(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_optimizer_config_mistakes_name_the_problem(plugin_dir):
    with pytest.raises(tc.ConfigError, match="Unknown optimizer 'sgd'. Known: .*joint, opro, .*tgd"):
        factory.build_optimizer({"name": "sgd"}, tc.credit_strategy("backprop"))
    with pytest.raises(tc.ConfigError, match="is not an optimizer: it lacks step, accepts"):
        registry.build("optimizer", {"_target_": "my_plugins.parts.ShoutCredit"})
    with pytest.raises(tc.ConfigError, match="unexpected keyword argument 'momentum'. It accepts: memory"):
        factory.build_optimizer({"name": "tgd", "momentum": 0.9}, tc.credit_strategy("backprop"))
    with pytest.raises(tc.ConfigError, match="optimizer=joint cannot use credit=backprop"):
        factory.build_optimizer({"name": "joint"}, tc.credit_strategy("backprop"))


def test_a_registered_name_and_an_entry_point_of_the_installed_project():
    from importlib.metadata import entry_points
    assert {ep.name for ep in entry_points(group="textgrad_core.credit")} >= {"backprop", "trace"}
    registry.register("credit", "plain_outcome", "credit.outcome:OutcomeCredit")
    try:
        assert tc.credit_strategy("plain_outcome").name == "outcome"
        assert "plain_outcome" in factory.CREDIT
    finally:
        registry._registered["credit"].pop("plain_outcome")


def test_plug_in_overrides_select_the_custom_group_for_each_target():
    out = factory.plug_in_overrides(["credit._target_=a.B", "+optimizer._target_=a.C", "trainer.max_steps=1"])
    assert out == ["credit._target_=a.B", "optimizer._target_=a.C", "trainer.max_steps=1", "credit=custom", "optimizer=custom"]
    assert factory.plug_in_overrides(["credit=custom", "credit._target_=a.B"]) == ["credit=custom", "credit._target_=a.B"]


def test_plugin_credit_and_optimizer_run_through_hydra_by_import_path(plugin_dir, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "credit=custom", "credit._target_=my_plugins.parts.ShoutCredit",
         "+credit.word=CLEARER", "optimizer=custom", "optimizer._target_=my_plugins.parts.AppendOptimizer",
         "trainer.max_steps=1", "trainer.progress=false", "trainer.eval_test=false", "trainer.val_size=3",
         f"run_dir={run_dir}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["credit"] == "shout" and summary["optimizer"] == "append"
    versions = [json.loads(l) for l in (run_dir / "parameters.jsonl").read_text().splitlines()]
    assert any("CLEARER!" in str(v["value"]) for v in versions)


def test_a_plugin_that_cannot_be_imported_is_exit_2_and_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "credit=custom", "credit._target_=nowhere.Credit",
                           "trainer.progress=false", f"run_dir={tmp_path / 'run'}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Cannot import credit strategy 'nowhere.Credit'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "summary.json").exists()
