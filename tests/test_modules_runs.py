"""The module tasks run one optimization step through Hydra on the simulator; bootstrap demos come from the
training split only (every step scanned); the static optimizer makes no forward call; the cascade reports cost
and quality per route choice."""
import asyncio
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.run import run_experiment
from tasks.cascade import CascadeTask, main as cascade_main
from tasks.gsm8k_mc import GSM8KMedpromptTask
from textgrad_core.credit import CreditResult
from textgrad_core.engines import EngineSet, ScriptedBackend, build_engine
from textgrad_core.modules.recorder import observations
from textgrad_core.optimizers.bootstrap import BootstrapDemos
from textgrad_core.optimizers.static import StaticAnalysis
from textgrad_core.variable import ParameterSet

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
SMALL = {
    "gsm8k_sc": ["task.n_train=4", "task.n_val=2", "task.test_size=1", "task.k=3", "trainer.batch_size=4"],
    "gsm8k_agent": ["task.n_train=4", "task.n_val=2", "task.test_size=1", "trainer.batch_size=4"],
    "cascade": ["task.n_train=2", "task.n_val=2", "task.test_size=1"],
    "gsm8k_mc": ["task.n_train=4", "task.n_val=2", "task.test_size=1", "task.ensemble=3"],
    "hotpotqa_multihop": ["task.n_train=2", "task.n_val=2", "task.n_test=1"],
    "humaneval_sf": ["task.n_train=2", "task.n_val=2", "task.n=2", "trainer.test_size=1"],
    "math_sympy": ["task.n_train=2", "task.n_val=2", "task.n_test=1"],
}


def run(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["trainer.progress=false", f"run_dir={tmp_path}", *overrides])
    return run_experiment(cfg)


def records(run_dir, name):
    return [json.loads(line) for line in (Path(run_dir) / name).read_text().splitlines()]


@pytest.mark.parametrize("task", sorted(SMALL))
def test_one_step_through_hydra_on_the_simulator(task, tmp_path):
    summary = run(tmp_path, f"task={task}", "trainer.max_steps=1", "trainer.batch_size=2", *SMALL[task])
    assert summary["status"] == "completed" and summary["simulated"] and summary["steps"] == 1
    assert summary["phases"]["forward"]["calls"] > 0
    assert any(m.get("step") == 1 and m.get("decision") for m in records(tmp_path, "metrics.jsonl"))
    prefix = {"gsm8k_sc": "cot.", "gsm8k_agent": "agent.", "cascade": "cascade.", "gsm8k_mc": "medprompt.",
              "hotpotqa_multihop": "rag.", "humaneval_sf": "coder.", "math_sympy": "solver."}[task]
    assert summary["parameters"] and all(p.startswith(prefix) for p in summary["parameters"])
    assert any(r["param"].startswith(prefix) for r in records(tmp_path, "gradients.jsonl"))


def test_bootstrap_demos_never_come_from_validation_or_test(tmp_path):
    summary = run(tmp_path, "task=gsm8k_mc", "optimizer=bootstrap", "credit=outcome", "trainer.max_steps=3",
                  "trainer.batch_size=3", "task.n_train=9", "task.n_val=3", "task.test_size=3", "task.ensemble=3",
                  "task.pool_size=2")
    assert summary["status"] == "completed"
    task = GSM8KMedpromptTask(n_train=9, n_val=3, test_size=3)
    splits = task.load_splits()
    train = {e.id for e in splits.train}
    held_out = {e.id for e in splits.val + splits.test} | {e.input for e in splits.val + splits.test}
    versions = [r for r in records(tmp_path, "parameters.jsonl") if r["param"] == "medprompt.demos"]
    assert len(versions) >= 2, "bootstrap added no demo in 3 steps"
    grown = max(len(v["value"]) for v in versions)
    assert grown > 2  # demos were bootstrapped beyond the initial pool of 2
    for version in versions:  # every version of every step
        for demo in version["value"]:
            assert demo["id"] in train and demo["id"] not in held_out and demo["input"] not in held_out


def test_bootstrap_ignores_successes_outside_the_training_split():
    task = GSM8KMedpromptTask(n_train=4, n_val=2, test_size=1, ensemble=1)
    splits = task.checked_splits()
    params = ParameterSet(task.initial_parameters())
    engines = EngineSet({"forward": {"provider": "sim", "cache": {"mode": "off"}}}, sim_world=task.sim_world(splits))
    from textgrad_core.engines.context import call_context

    async def passes():
        for split, examples in (("val", splits.val), ("test", splits.test)):
            for e in examples:
                with call_context(example_id=e.id, split=split):
                    await task.forward(e, params, engines)

    asyncio.run(passes())
    demos = params["medprompt.demos"]
    assert observations(demos) == []  # validation and test passes are never recorded
    credit = CreditResult("outcome", "scores", scores={e.id: 1.0 for e in splits.val + splits.test})
    events = asyncio.run(BootstrapDemos().step(list(params), credit, None, 1))
    assert demos.version == 0 and not any(e.accepted for e in events)


def test_static_optimizer_makes_no_forward_call():
    task = GSM8KMedpromptTask(n_train=4, n_val=2, test_size=1)
    params = list(ParameterSet(task.initial_parameters()))
    backend = ScriptedBackend(reply_fn=lambda r: "<NEW_VALUE>\nAnswer carefully; end with 'Answer: <letter>'.\n</NEW_VALUE>"
                              if r.tag.endswith(".instruction") else "<NEW_VALUE>\n3\n</NEW_VALUE>")
    engine = build_engine({"provider": "scripted", "cache": {"mode": "off"}}, backend=backend)
    credit = CreditResult("outcome", "scores", scores={"gsm8k-train-1": 0.0})
    events = asyncio.run(StaticAnalysis().step(params, credit, engine, 1))
    tags = [r.tag for r in backend.requests]
    assert tags and all(t.startswith("optimizer:static:") for t in tags)
    assert sum(t.startswith("forward:") for t in tags) == 0
    assert "Used by Medprompt 'medprompt'" in backend.requests[0].user_text  # the module's structure, not a run
    assert {e.param_id for e in events if e.accepted} == {"medprompt.instruction", "medprompt.ensemble"}


def test_static_optimizer_through_hydra_calls_no_forward_in_its_phase(tmp_path):
    summary = run(tmp_path, "task=math_sympy", "optimizer=static", "credit=outcome", "trainer.max_steps=1",
                  "trainer.batch_size=2", "task.n_train=2", "task.n_val=2", "task.n_test=1")
    assert summary["status"] == "completed" and summary["phases"]["optimizer"]["calls"] > 0
    calls = records(tmp_path, "calls.jsonl")
    optimizer_calls = [c for c in calls if c["phase"] == "optimizer"]
    assert optimizer_calls and all(c["tag"].startswith("optimizer:static:") for c in optimizer_calls)
    prompt = optimizer_calls[0]["messages"][-1]["content"]
    assert "SymbolicChecker 'solver'" in prompt and "Solve for x" in prompt  # structure and training inputs
    assert "Correct" not in prompt and "Wrong" not in prompt  # no feedback from running it


def test_cascade_report_shows_cost_and_quality_per_choice(capsys):
    task = CascadeTask(n_train=2, n_val=6, test_size=1)
    splits = task.checked_splits()
    engines = EngineSet({"forward": {"provider": "sim", "cache": {"mode": "off"}}}, sim_world=task.sim_world(splits))
    points = asyncio.run(task.frontier_report(engines, splits.val))
    assert sorted(p["choice"] for p in points) == ["large", "small", "small->large"]
    by = {p["choice"]: p for p in points}
    assert by["small"]["cost"] < by["large"]["cost"] and by["small"]["escalated"] == 0
    assert all(0 <= p["quality"] <= 1 and "on_frontier" in p for p in points)
    assert by["small"]["on_frontier"]  # the cheapest choice is never dominated on cost
    assert cascade_main(["--examples", "3"]) == 0
    out = capsys.readouterr().out
    assert "SIMULATION" in out and all(c in out for c in ("small", "large", "small->large", "cost/question"))
