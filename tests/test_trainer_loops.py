"""The loops researchers run (fixed order, validation every k steps or never, a loss-only task) and failed examples."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from textgrad_core.credit import SCORES, CreditResult
from textgrad_core.engines import EngineSet, LLMRequest, ScriptedBackend
from textgrad_core.errors import ProviderError
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.ops import LLMCall
from textgrad_core.optimizers import TGD
from textgrad_core.rundir import RunDir
from textgrad_core.task import Example, Splits, Task
from textgrad_core.trainer import Trainer, TrainerConfig
from textgrad_core.variable import Parameter

from runs_cli import records
from test_sim_check import LanguageTask


class EchoTask(Task):
    """Example i passes when the instruction holds its keyword; `loss()` is overridden, so no metric() is defined."""

    name = "echo"

    def __init__(self, initial: str = "start"):
        self.initial = initial

    def load_splits(self) -> Splits:
        return Splits(train=[Example(id=f"t{i}", input=f"k{i}", target="yes") for i in range(6)],
                      val=[Example(id=f"v{i}", input=f"k{i}", target="yes") for i in range(4)],
                      test=[Example(id="x0", input="k0", target="yes")])

    def initial_parameters(self) -> list[Parameter]:
        return [Parameter(value=self.initial, name="instruction", role="instruction")]

    async def forward(self, example, params, engines):
        return await LLMCall(engines["forward"], params["instruction"], name="solve").acall(example.input)

    async def loss(self, prediction, example, engines):
        def judge(pred: Any, ex: Example) -> MetricResult:
            return MetricResult(score=float(pred == ex.target), feedback="ok" if pred == ex.target else "wrong")
        return MetricLoss(judge, name="echo")(prediction, example)


class Scores:
    name, kind = "scores", SCORES

    async def assign(self, traces, params, engine) -> CreditResult:
        return CreditResult(strategy=self.name, kind=self.kind, scores={t.example_id: t.loss.score for t in traces})


def backend(new_values: list[str], fail_inputs: set[str] = frozenset()) -> ScriptedBackend:
    """Forward: 'yes' when the input keyword is in the system prompt (a ProviderError for `fail_inputs`).
    Optimizer: the next of `new_values`."""
    queue = list(new_values)

    def reply(request: LLMRequest) -> str:
        if request.tag.startswith("forward:"):
            if request.user_text in fail_inputs:
                raise ProviderError("scripted", "injected failure after retries", status=500, attempts=5)
            return "yes" if request.user_text in (request.system or "").split() else "no"
        return f"<NEW_VALUE>\n{queue.pop(0) if queue else 'start'}\n</NEW_VALUE>"

    return ScriptedBackend(reply_fn=reply)


def trainer(tmp_path, b: ScriptedBackend, **config: Any) -> Trainer:
    run = RunDir(tmp_path / "run", simulated=True)
    engines = EngineSet({"forward": {"provider": "scripted", "model": "m", "cache": {"enabled": False}}}, scripted=b,
                        call_log=run.calls, events=run.events)
    initial = config.pop("initial", "start")
    cfg = TrainerConfig(**{"batch_size": 2, "progress": False, **config})
    task = EchoTask(initial)
    # The toy splits share keyword inputs on purpose (scores by keyword), so they are passed in, not checked.
    return Trainer(task, engines, Scores(), TGD(), cfg, run=run, splits=task.load_splits())


def test_a_task_that_overrides_loss_needs_no_metric(tmp_path):
    summary = asyncio.run(trainer(tmp_path, backend(["k0 k1"]), max_steps=1).train())
    assert summary["status"] == "completed" and summary["val"] == {"initial": 0.0, "final": 0.5}


def test_shuffle_false_keeps_the_stored_order(tmp_path):
    t = trainer(tmp_path, backend([]), shuffle=False, epochs=2)
    assert [[e.id for e in b] for b in t.batches()] == [["t0", "t1"], ["t2", "t3"], ["t4", "t5"]] * 2
    shuffled = trainer(tmp_path / "s", backend([]), shuffle=True, epochs=1)
    assert sorted(e.id for b in shuffled.batches() for e in b) == [f"t{i}" for i in range(6)]
    assert [[e.id for e in b] for b in shuffled.batches()] != [["t0", "t1"], ["t2", "t3"], ["t4", "t5"]]


def test_validation_every_k_steps_gates_the_changes_since_the_last_validation(tmp_path):
    # steps 1-2 unvalidated (k=2 validates at step 2), step 3 unvalidated, step 4 validated and worse: reverted
    # back to the values accepted at step 2.
    t = trainer(tmp_path, backend(["k0", "k0 k1 k2", "k0 k1 k2 k3", "nothing"]), val_every=2, max_steps=4,
                shuffle=False, epochs=2)
    summary = asyncio.run(t.train())
    decisions = [r["decision"] for r in t.history]
    assert decisions == ["initial", "not validated", "accepted", "not validated", "reverted"]
    assert t.params["instruction"].value == "k0 k1 k2" and summary["val"]["final"] == 0.75
    calls = [json.loads(l) for l in (tmp_path / "run" / "calls.jsonl").read_text().splitlines()]
    assert sum(c["phase"] == "validation" for c in calls) == 4 * 3  # initial, step 2, step 4


def test_val_every_zero_never_validates_and_reports_the_final_values(tmp_path):
    t = trainer(tmp_path, backend(["k0", "k0 k1"]), val_every=0, max_steps=2, shuffle=False)
    summary = asyncio.run(t.train())
    assert [r["decision"] for r in t.history] == ["initial", "not validated", "not validated"]
    assert t.params["instruction"].value == "k0 k1" and summary["val"] == {"initial": 0.0, "final": 0.5}


def test_a_failed_example_is_left_out_of_the_comparison_and_counted(tmp_path):
    # v3's input (k3) always fails: validation compares on v0..v2 only, and says so.
    t = trainer(tmp_path, backend(["k0 k1"], fail_inputs={"k3"}), max_steps=1, shuffle=False)
    summary = asyncio.run(t.train())
    assert summary["status"] == "completed"
    step = t.history[1]
    assert step["decision"] == "accepted" and step["failed"]["val"] == ["v3"]
    assert step["comparison"]["compared_on"] == 3 and step["comparison"]["candidate"] == round(2 / 3, 4)
    assert summary["failures"]["failed_passes"] == 2  # v3 in the initial validation and in step 1's
    events = [json.loads(l) for l in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert [e["example"] for e in events if e["kind"] == "example_failed"].count("v3") == 2


def test_too_many_failures_stop_the_run_cleanly_with_a_summary(tmp_path):
    t = trainer(tmp_path, backend([], fail_inputs={"k0", "k1", "k2"}), max_steps=2, shuffle=False,
                max_failed_fraction=0.1)
    summary = asyncio.run(t.train())
    assert summary["status"] == "stopped" and "max_failed_fraction=0.1" in summary["stop_reason"]
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["status"] == "stopped" and written["usage"]["calls"] > 0


@pytest.mark.parametrize("accept,expected", [("not_worse", "accepted"), ("better", "reverted")])
def test_accept_rules_on_a_tie(tmp_path, accept, expected):
    t = trainer(tmp_path, backend(["start again"]), max_steps=1, accept=accept)
    asyncio.run(t.train())
    assert t.history[1]["decision"] == expected


def test_update_on_errors_skips_credit_and_update_when_the_batch_is_all_right(tmp_path):
    # Trace's online protocol: one example per step, an update only after a wrong answer.
    b = backend(["k0 k1"])
    t = trainer(tmp_path, b, batch_size=1, max_steps=3, shuffle=False, update_on="errors", val_every=0, initial="k0")
    asyncio.run(t.train())
    # step 1 (t0, input k0) is right: nothing; step 2 (t1) is wrong: one update; step 3 (t2) wrong again.
    assert [r["decision"] for r in t.history] == ["initial", "no change", "not validated", "not validated"]
    assert t.history[1]["credit"] is None and len(b.requests_tagged("optimizer")) == 2


def test_a_run_whose_every_call_fails_stops_at_once_and_says_why(tmp_path):
    t = trainer(tmp_path, backend([], fail_inputs={f"k{i}" for i in range(6)}), max_steps=2)
    summary = asyncio.run(t.train())
    assert summary["status"] == "stopped" and "4 of 4 example passes failed" in summary["stop_reason"]
    assert summary["steps"] == 0 and summary["val"]["initial"] is None


def test_a_simulated_run_whose_parser_never_reads_the_simulator_warns_at_once(tmp_path):
    task = LanguageTask()  # reads 'Language:'; the simulator answers 'Answer: ...'
    splits = task.load_splits()
    run = RunDir(tmp_path / "run", simulated=True)
    engines = EngineSet({"forward": {"provider": "sim", "model": "sim-1", "cache": {"enabled": False}}},
                        sim_world=task.sim_world(splits), call_log=run.calls, events=run.events)
    t = Trainer(task, engines, Scores(), TGD(), TrainerConfig(max_steps=0, progress=False), run=run, splits=splits)
    asyncio.run(t.train())
    events = [e for e in records(tmp_path / "run" / "events.jsonl") if e["kind"] == "sim_answer_format"]
    assert len(events) == 1 and "Answer:" in events[0]["warning"]
