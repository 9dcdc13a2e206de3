"""Candidate search: the Pareto front, and trainer-level validation gating of candidates (scripted engine)."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from textgrad_core.credit import SCORES, CreditResult, ExampleTrace
from textgrad_core.engines import EngineSet, LLMRequest, ScriptedBackend
from textgrad_core.errors import ConfigError
from textgrad_core.loss import MetricResult
from textgrad_core.ops import LLMCall, join
from textgrad_core.optimizers import TGD
from textgrad_core.rundir import RunDir
from textgrad_core.search import CandidateSearch, pareto_front, wins
from textgrad_core.task import Example, Splits, Task
from textgrad_core.trainer import Trainer, TrainerConfig
from textgrad_core.variable import Parameter

# ---- pareto_front --------------------------------------------------------------------------------------------
TABLE = {
    "a": {"e1": 1.0, "e2": 0.0, "e3": 0.5},
    "b": {"e1": 0.0, "e2": 1.0, "e3": 0.5},
    "c": {"e1": 0.0, "e2": 0.5, "e3": 0.5},  # dominated by b
    "d": {"e1": 1.0, "e2": 0.0, "e3": 0.5},  # identical to a: neither dominates the other
    "e": {"e1": 0.6, "e2": 0.6, "e3": 0.5},  # best on no example alone, yet not dominated
    "f": {"e1": 1.0, "e2": 0.0, "e3": 0.2},  # ties a on e1 and e2, worse on e3: dominated
    "g": {"e1": 1.0},                       # missing scores count as the lowest: dominated by a
}


def test_pareto_front_keeps_exactly_the_non_dominated_candidates():
    assert pareto_front(TABLE) == {"a", "b", "d", "e"}
    assert pareto_front({"x": {"e1": 0.3}}) == {"x"}
    assert pareto_front({"x": {"e1": 0.3}, "y": {"e1": 0.3}}) == {"x", "y"}
    assert pareto_front({}) == set()


def test_wins_counts_tied_best_examples_for_each_tied_candidate():
    assert wins(TABLE) == {"a": 2, "b": 2, "c": 1, "d": 2, "e": 1, "f": 1, "g": 1}


# ---- a tiny task whose score is which keywords the instruction holds -------------------------------------------
class KeywordTask(Task):
    """Example i passes when the instruction mentions its keyword; the scripted engine answers accordingly."""

    name = "keywords"

    def __init__(self, initial: dict[str, str]):
        self.initial = initial

    def load_splits(self) -> Splits:
        return Splits(train=[Example(id=f"t{i}", input=f"k{i}", target="yes") for i in (1, 2)],
                      val=[Example(id=f"v{i}", input=f"k{i}", target="yes") for i in (1, 2, 3, 4)],
                      test=[Example(id="x1", input="TESTONLY-k1", target="yes")])

    def initial_parameters(self) -> list[Parameter]:
        return [Parameter(value=v, name=n, role=f"instruction part {n}") for n, v in self.initial.items()]

    async def forward(self, example, params, engines):
        system = join(*(params[n] for n in self.initial), sep=" ") if len(self.initial) > 1 else params["instruction"]
        return await LLMCall(engines["forward"], system, name="solve").acall(example.input)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        ok = prediction == example.target
        return MetricResult(score=1.0 if ok else 0.0, feedback="Correct." if ok else "Wrong.")


class ScoresOnly:
    """A credit strategy that passes only the minibatch scores (no LLM call)."""

    name = "scores_only"
    kind = SCORES

    async def assign(self, traces: list[ExampleTrace], params, engine) -> CreditResult:
        return CreditResult(strategy=self.name, kind=self.kind, scores={t.example_id: t.score for t in traces})


def scripted(proposals: dict[tuple[str, int], str]) -> ScriptedBackend:
    """Forward: 'yes' when the example's keyword is a word of the system prompt. Optimizer: proposals by (param, sample)."""

    def reply(request: LLMRequest) -> str:
        if request.tag.startswith("forward:"):
            keyword = request.user_text.removeprefix("TESTONLY-")
            return "yes" if keyword in (request.system or "").split() else "no"
        assert request.tag.startswith("optimizer:tgd:"), request.tag
        param = request.tag.rsplit(":", 1)[1]
        current = re.search(r"<CURRENT_VALUE>\n(.*?)\n</CURRENT_VALUE>", request.user_text, re.DOTALL).group(1)
        return f"<NEW_VALUE>\n{proposals.get((param, request.sample_index), current)}\n</NEW_VALUE>"

    return ScriptedBackend(reply_fn=reply)


def trainer_for(task: Task, backend: ScriptedBackend, search: CandidateSearch, tmp_path: Path, steps: int = 2) -> Trainer:
    engines = EngineSet({"forward": {"provider": "scripted", "model": "m", "cache": {"enabled": False}}}, scripted=backend)
    config = TrainerConfig(epochs=steps, batch_size=2, seed=0, progress=False)
    # The toy splits share inputs on purpose (scores by keyword), so they are passed in rather than checked.
    return Trainer(task, engines, ScoresOnly(), search.optimizer, config, run=RunDir(tmp_path / "run", simulated=True),
                   search=search, splits=task.load_splits())


WORSE = {("instruction", 0): "k1", ("instruction", 1): "k4", ("instruction", 2): "k1 k2"}


@pytest.mark.parametrize("selection", ["greedy", "beam", "pareto"])
def test_a_candidate_worse_on_validation_is_never_accepted(selection, tmp_path: Path):
    backend = scripted(WORSE)  # every proposal scores below the initial 0.75 on validation
    search = CandidateSearch(TGD(), selection=selection, n_candidates=3, temperature=0.7, beam_width=2)
    trainer = trainer_for(KeywordTask({"instruction": "k1 k2 k3"}), backend, search, tmp_path)
    summary = asyncio.run(trainer.train())

    param = trainer.params["instruction"]
    assert param.value == "k1 k2 k3" and [h.version for h in param.history] == [0]
    assert summary["val"] == {"initial": 0.75, "final": 0.75}
    assert [r["decision"] for r in trainer.history[1:]] == ["rejected", "no change"]  # step 2 proposes the same again
    step1 = trainer.history[1]["search"]["candidates"]
    assert sorted(c["val"] for c in step1) == [0.25, 0.25, 0.5]
    pool = [c.values["instruction"] for c in search.pool]
    if selection == "pareto":  # "k4" is worse on the mean but the only candidate right on v4: it stays in the pool
        assert sorted(pool) == ["k1 k2 k3", "k4"]
    elif selection == "beam":
        assert pool == ["k1 k2 k3", "k1 k2"]
    else:
        assert pool == ["k1 k2 k3"]
    # Validation evaluates the initial values and the three distinct candidates once each; test never reaches it.
    assert trainer.phases["validation"].row()["calls"] == 4 * (1 + 3)
    parents = sum(len(r["search"]["parents"]) for r in trainer.history[1:])
    assert trainer.phases["optimizer"].row()["calls"] == 3 * parents  # one call per sample per parent
    assert not any("TESTONLY" in m.content for r in backend.requests if r.tag.startswith("optimizer") for m in r.messages)
    assert {r.sample_index for r in backend.requests_tagged("optimizer")} == {0, 1, 2}
    assert {r.temperature for r in backend.requests_tagged("optimizer")} == {0.7}
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["policy"]["selection"] == selection


def test_greedy_accepts_the_best_candidate_through_parameter_update(tmp_path: Path):
    proposals = {("instruction", 0): "k1 k2", ("instruction", 1): "k1 k2 k3", ("instruction", 2): "k4"}
    search = CandidateSearch(TGD(), selection="greedy", n_candidates=3, temperature=0.7)
    trainer = trainer_for(KeywordTask({"instruction": "k1"}), scripted(proposals), search, tmp_path, steps=1)
    summary = asyncio.run(trainer.train())

    param = trainer.params["instruction"]
    assert param.value == "k1 k2 k3" and [h.version for h in param.history] == [0, 1]
    assert param.history[1].step == 1 and "search (greedy)" in param.history[1].reason
    assert summary["val"] == {"initial": 0.25, "final": 0.75} and trainer.history[1]["decision"] == "accepted"
    logged = [json.loads(line) for line in (tmp_path / "run" / "parameters.jsonl").read_text().splitlines()]
    assert [(r["version"], r["value"]) for r in logged] == [(0, "k1"), (1, "k1 k2 k3")]
    assert summary["test"] == {"initial": 1.0, "final": 1.0}


def test_merge_combines_candidates_that_changed_different_parameters(tmp_path: Path):
    proposals = {("a", 0): "k1 k3", ("b", 1): "k2 k4"}  # sample 0 changes only a, sample 1 only b
    search = CandidateSearch(TGD(), selection="greedy", n_candidates=2, temperature=0.7, merge=True)
    trainer = trainer_for(KeywordTask({"a": "k1", "b": "k2"}), scripted(proposals), search, tmp_path, steps=1)
    summary = asyncio.run(trainer.train())

    assert trainer.params.values() == {"a": "k1 k3", "b": "k2 k4"}
    assert search.incumbent is not None and search.incumbent.origin == "merge"
    assert summary["val"] == {"initial": 0.5, "final": 1.0}
    assert [c["val"] for c in trainer.history[1]["search"]["candidates"]] == [0.75, 0.75, 1.0]


def test_minibatch_gate_skips_validation_for_candidates_worse_on_the_minibatch(tmp_path: Path):
    # The minibatch is t1, t2 (k1, k2): "k3 k4" fails both, so it never reaches validation.
    proposals = {("instruction", 0): "k3 k4", ("instruction", 1): "k1 k2 k3"}
    search = CandidateSearch(TGD(), selection="pareto", n_candidates=2, minibatch_gate=True)
    trainer = trainer_for(KeywordTask({"instruction": "k1 k2"}), scripted(proposals), search, tmp_path, steps=1)
    asyncio.run(trainer.train())
    rows = {c["id"]: c["val"] for c in trainer.history[1]["search"]["candidates"]}
    assert sorted(rows.values(), key=str) == [0.75, None]
    assert trainer.params["instruction"].value == "k1 k2 k3"
    # 4 initial + 2 minibatch for each candidate + 4 validation for the one that passed the gate
    assert trainer.phases["validation"].row()["calls"] == 4 + 2 * 2 + 4


def test_search_rejects_bad_configuration():
    with pytest.raises(ConfigError, match="Unknown search selection 'annealing'"):
        CandidateSearch(TGD(), selection="annealing")

    class StepOnly:
        name, accepts = "step_only", frozenset({"scores"})

        async def step(self, params, credit, engine, step, events=None):
            return []

    with pytest.raises(ConfigError, match="no propose"):
        CandidateSearch(StepOnly())


@pytest.mark.parametrize("overrides", [["credit=trace", "optimizer=joint", "search=pareto"],
                                       ["credit=outcome", "optimizer=opro", "search=beam", "search.beam_width=2"]])
def test_search_runs_end_to_end_on_the_simulator(overrides, tmp_path: Path):
    from hydra import compose, initialize_config_dir

    from experiments.run import run_experiment

    config_dir = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose("config", overrides=overrides + [
            f"run_dir={tmp_path}", "trainer.progress=false", "trainer.max_steps=3", "trainer.val_size=20",
            "trainer.test_size=10"])
    summary = run_experiment(cfg)
    assert summary["simulated"] and summary["search"]["selection"] == overrides[2].split("=")[1]
    assert summary["val"]["final"] >= summary["val"]["initial"]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best = [m["best_val"] for m in metrics]
    assert best == sorted(best)  # the incumbent never gets worse on validation
    versions = [json.loads(line) for line in (tmp_path / "parameters.jsonl").read_text().splitlines()]
    assert [v["version"] for v in versions] == list(range(len(versions)))  # every change is a logged version
    assert summary["parameters"]["instruction"]["value"] == versions[-1]["value"]
