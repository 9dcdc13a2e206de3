"""Checkpoints hold JSON state only: every shipped optimizer and credit strategy round-trips its state_dict, a resumed
run sends the same optimizer prompts as an uninterrupted one, and a pickle in a checkpoint is refused, never loaded."""
from __future__ import annotations

import asyncio
import base64
import json
import pickle
from pathlib import Path

import pytest

from runs_cli import run_cli
from textgrad_core import checkpoint as ckpt
from textgrad_core.credit import PER_PARAMETER, SCORES, CreditResult, ParameterFeedback
from textgrad_core.engines import JsonlLog, ScriptedBackend, build_engine
from textgrad_core.errors import ConfigError
from textgrad_core.optimizers import OPRO, TGD, JointUpdate
from textgrad_core.optimizers.bootstrap import BootstrapDemos
from textgrad_core.optimizers.static import StaticAnalysis
from textgrad_core.variable import Parameter, ParameterSet


def engine_for(backend: ScriptedBackend):
    return build_engine({"provider": "scripted", "model": "m", "cache": {"enabled": False}}, backend=backend)


def reply_from_prompt(request) -> str:
    """A reply that depends only on the prompt, so two runs that send the same prompts get the same replies."""
    return f"<NEW_VALUE>\nvalue-{sum(map(ord, request.user_text)) % 9973}\n</NEW_VALUE>"


def feedback(param: Parameter, step: int) -> CreditResult:
    return CreditResult("backprop", PER_PARAMETER, feedback={param.id: [ParameterFeedback(f"e{step}", f"feedback-{step}")]},
                        scores={f"e{step}": 0.1 * step})


def scores(step: int) -> CreditResult:
    return CreditResult("outcome", SCORES, scores={"e1": (step * 37 % 10) / 10, "e2": 0.5})


def through_json(state):
    """What a checkpoint file gives back: the state written as JSON text and read again."""
    return json.loads(json.dumps(state))


# ---- every shipped class round-trips its state ------------------------------------------------------------------
def stepped_tgd() -> TGD:
    param = Parameter(value="value-zero", name="instruction", role="system prompt")
    tgd = TGD(memory=2)
    backend = ScriptedBackend(reply_fn=reply_from_prompt)
    for step in (1, 2, 3):
        asyncio.run(tgd.step([param], feedback(param, step), engine_for(backend), step))
    tgd.steps_taken = 3
    return tgd


def stepped_opro() -> OPRO:
    param = Parameter(value="value-zero", name="instruction", role="system prompt")
    opro = OPRO(top_k=5)
    backend = ScriptedBackend(reply_fn=reply_from_prompt)
    for step in (1, 2, 3):
        asyncio.run(opro.step([param], scores(step), engine_for(backend), step))
    return opro


def test_tgd_memory_round_trips_through_json():
    tgd = stepped_tgd()
    state = ckpt.object_state(tgd)
    assert len(state["state_dict"]["past"]["instruction"]) == 3 and state["state_dict"]["steps_taken"] == 3
    fresh = TGD(memory=2)
    ckpt.restore_object(fresh, through_json(state))
    assert ckpt.object_state(fresh) == state
    param = Parameter(value="anything", name="instruction", role="system prompt")
    assert fresh.past_updates(param, 4) == tgd.past_updates(param, 4) and len(fresh.past_updates(param, 4)) == 2
    assert fresh.steps_taken == 3


def test_opro_history_round_trips_in_order():
    opro = stepped_opro()
    state = ckpt.object_state(opro)
    assert len(state["state_dict"]["history"]) == 3
    fresh = OPRO(top_k=5)
    ckpt.restore_object(fresh, through_json(state))
    assert ckpt.object_state(fresh) == state
    assert list(fresh.history) == list(opro.history)  # keys rebuilt, insertion order (which breaks ties) kept
    param = Parameter(value="value-zero", name="instruction", role="system prompt")
    assert fresh.top(param) == opro.top(param) and fresh.prompt(param) == opro.prompt(param)


@pytest.mark.parametrize("make", [JointUpdate, BootstrapDemos, StaticAnalysis], ids=lambda c: c.__name__)
def test_stateless_optimizers_round_trip_their_step_count(make):
    opt = make()
    opt.steps_taken = 5
    state = ckpt.object_state(opt)
    assert state == {"state_dict": {"steps_taken": 5}}
    fresh = make()
    ckpt.restore_object(fresh, through_json(state))
    assert fresh.steps_taken == 5


def credit_strategies():
    from credit.adaptive import AdaptiveCredit
    from credit.backprop import Backprop
    from credit.outcome import OutcomeCredit
    from credit.semantic import SemanticBackprop
    from credit.trace import TracePropagation
    return [("adaptive", lambda: AdaptiveCredit(max_trace_tokens=900, fallback="backprop", value_limit=50)),
            ("backprop", lambda: Backprop(max_tokens=99)), ("semantic", SemanticBackprop),
            ("trace", lambda: TracePropagation(value_limit=70)), ("outcome", OutcomeCredit)]


@pytest.mark.parametrize("name,make", credit_strategies(), ids=[n for n, _ in credit_strategies()])
def test_every_credit_strategy_round_trips_as_json(name, make):
    strategy = make()
    state = ckpt.object_state(strategy)
    assert ckpt.json_problem(state) is None
    fresh = make()
    ckpt.restore_object(fresh, through_json(state))
    assert ckpt.object_state(fresh) == state


def test_adaptive_credit_saves_the_state_of_its_parts():
    from credit.adaptive import AdaptiveCredit
    state = ckpt.object_state(AdaptiveCredit(fallback="backprop", fallback_options={"max_tokens": 77}))["state_dict"]
    assert state == {"trace": {"state_dict": {}}, "fallback": {"state_dict": {}}}
    with pytest.raises(ConfigError, match="malformed"):
        ckpt.restore_object(AdaptiveCredit(), {"state_dict": {"trace": {"state_dict": {}}}})


def test_every_shipped_optimizer_and_credit_strategy_has_a_state_dict():
    import textgrad_core as tc
    built = [tc.optimizer(name) for name in tc.optimizer_names()] + \
            [tc.credit_strategy(name) for name in tc.credit_strategies()]
    assert len(built) >= 10
    for part in built:
        assert callable(getattr(part, "state_dict", None)) and callable(getattr(part, "load_state_dict", None)), part
        assert "state_dict" in ckpt.object_state(part)


# ---- resume gives the prompts of the uninterrupted run ----------------------------------------------------------
def run_steps(optimizer, param: Parameter, steps: range, credit_for, backend: ScriptedBackend) -> None:
    for step in steps:
        asyncio.run(optimizer.step([param], credit_for(param, step), engine_for(backend), step))


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("kind", ["tgd", "opro"])
def test_resume_after_step_k_sends_the_uninterrupted_prompts(kind, k, tmp_path: Path):
    make = (lambda: TGD(memory=2)) if kind == "tgd" else (lambda: OPRO(top_k=3))
    credit_for = feedback if kind == "tgd" else (lambda param, step: scores(step))
    whole_backend = ScriptedBackend(reply_fn=reply_from_prompt)
    whole_param = Parameter(value="value-zero", name="instruction", role="system prompt")
    run_steps(make(), whole_param, range(1, 5), credit_for, whole_backend)

    first_param = Parameter(value="value-zero", name="instruction", role="system prompt")
    first = make()
    run_steps(first, first_param, range(1, k + 1), credit_for, ScriptedBackend(reply_fn=reply_from_prompt))
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps({"parameters": ckpt.parameters_state(ParameterSet([first_param])),
                                "optimizer": ckpt.object_state(first)}))

    saved = json.loads(path.read_text())  # a new process: new objects, built from the config, then the file
    param = Parameter(value="value-zero", name="instruction", role="system prompt")
    ckpt.restore_parameters(ParameterSet([param]), saved["parameters"])
    resumed = make()
    ckpt.restore_object(resumed, saved["optimizer"])
    backend = ScriptedBackend(reply_fn=reply_from_prompt)
    run_steps(resumed, param, range(k + 1, 5), credit_for, backend)

    expected = [r.user_text for r in whole_backend.requests[k:]]
    assert [r.user_text for r in backend.requests] == expected
    memory_tag = "<PAST_UPDATES>" if kind == "tgd" else 'score="'
    assert memory_tag in backend.requests[0].user_text  # the memory really is in the next prompt
    # Without the optimizer's state the next prompt differs: the test above can fail.
    control_param = Parameter(value="value-zero", name="instruction", role="system prompt")
    ckpt.restore_parameters(ParameterSet([control_param]), saved["parameters"])
    control = ScriptedBackend(reply_fn=reply_from_prompt)
    run_steps(make(), control_param, range(k + 1, k + 2), credit_for, control)
    assert control.requests[0].user_text != expected[0]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    config_dir = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


@pytest.mark.parametrize("choice,memory_tag", [
    (["optimizer=tgd", "optimizer.memory=2", "credit=backprop", "credit.skip_perfect=false"], '<PAST_VALUE n='),
    (["optimizer=opro", "credit=outcome"], 'score="')], ids=["tgd-memory", "opro"])
def test_a_trainer_resumed_after_step_2_sends_the_uninterrupted_optimizer_prompts(choice, memory_tag, tmp_path: Path):
    from omegaconf import OmegaConf

    from experiments.factory import build_credit, build_engines, build_optimizer, load_task
    from textgrad_core.trainer import Trainer, TrainerConfig

    def trainer(max_steps: int, log: Path):
        plain = OmegaConf.to_container(compose(["task=layered", f"trainer.max_steps={max_steps}", "trainer.val_size=4",
                                                "trainer.progress=false", "trainer.eval_test=false", *choice]), resolve=True)
        task = load_task(plain["task"])
        splits = task.load_splits()
        credit = build_credit(plain["credit"])
        optimizer = build_optimizer(plain["optimizer"], credit)
        return Trainer(task, build_engines(plain, task, splits, call_log=JsonlLog(log)), credit, optimizer,
                       TrainerConfig.model_validate(plain["trainer"]), splits=splits)

    def optimizer_prompts(log: Path, after_step: int) -> list:
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return [c["messages"] for c in calls if c["role"] == "optimizer" and c["step"] > after_step]

    whole = trainer(4, tmp_path / "whole.jsonl")
    asyncio.run(whole.train())
    first = trainer(2, tmp_path / "first.jsonl")
    asyncio.run(first.train())
    resumed = trainer(4, tmp_path / "resumed.jsonl")
    resumed.load_state(json.loads(json.dumps(first.state(0.0))))  # what checkpoint.json holds
    asyncio.run(resumed.train())
    expected = optimizer_prompts(tmp_path / "whole.jsonl", 2)
    assert expected and optimizer_prompts(tmp_path / "resumed.jsonl", 2) == expected
    # Each prompt after the resume shows two remembered items (past values, scored values); a fresh optimizer
    # would show fewer at step 3, since steps 1 and 2 are only in the checkpoint.
    assert all(m[-1]["content"].count(memory_tag) >= 2 for m in expected)
    assert resumed.params.values() == whole.params.values()
    assert ckpt.object_state(resumed.optimizer) == ckpt.object_state(whole.optimizer)


# ---- nothing but JSON, and no pickle is ever loaded ---------------------------------------------------------------
def strings_in(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from strings_in(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings_in(v)


def looks_pickled(text: str) -> bool:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return raw[:1] == b"\x80"  # every pickle protocol >= 2 starts with PROTO


@pytest.fixture(scope="module")
def opro_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("opro")
    proc = run_cli(cwd, f"run_dir={cwd / 'run'}", "trainer.progress=false", "trainer.max_steps=2", "trainer.val_size=4",
                   "trainer.test_size=2", "optimizer=opro", "credit=adaptive")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cwd / "run"


def test_a_run_checkpoint_is_plain_json_without_any_pickle(opro_run: Path):
    state = json.loads((opro_run / "checkpoint.json").read_text())
    assert state["format"] == ckpt.FORMAT
    assert state["optimizer"]["state_dict"]["history"]  # OPRO's scored history is in it, as JSON
    assert "state_dict" in state["credit"]
    assert ckpt.json_problem(state) is None
    texts = list(strings_in(state))
    assert "pickle" not in texts and not any(looks_pickled(t) for t in texts if len(t) >= 8)


class Detonator:
    """Unpickling this touches a marker file: the proof that a payload ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def payload(marker: Path) -> str:
    return base64.b64encode(pickle.dumps({"x": Detonator(marker)})).decode("ascii")


def test_a_pickle_payload_is_refused_without_being_unpickled(tmp_path: Path, monkeypatch):
    marker = tmp_path / "exploded"
    forged = {"pickle": payload(marker)}
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("a checkpoint was unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("a checkpoint was unpickled"))
    with pytest.raises(ConfigError) as err:
        ckpt.restore_object(TGD(), forged)
    assert "written by an older version" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="older version; |older version of textgrad-core"):
        ckpt.check_format({"format": ckpt.FORMAT, "optimizer": forged})
    assert not marker.exists()


@pytest.mark.parametrize("fmt", [2, ckpt.FORMAT], ids=["old-format", "forged-current-format"])
def test_resuming_a_forged_pickle_checkpoint_is_one_line_and_runs_nothing(fmt, opro_run: Path, tmp_path: Path):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(opro_run, run_dir)
    marker = tmp_path / "exploded"
    state = json.loads((run_dir / "checkpoint.json").read_text())
    state["format"] = fmt
    state["optimizer"] = {"pickle": payload(marker)}
    (run_dir / "checkpoint.json").write_text(json.dumps(state))
    proc = run_cli(tmp_path, f"resume={run_dir}")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "written by an older version" in proc.stderr, proc.stderr
    assert not marker.exists()


# ---- clear errors at save time and on malformed state -------------------------------------------------------------
class PluginWithObjects:
    name = "plugin-objects"
    accepts = frozenset({PER_PARAMETER})

    def __init__(self):
        self.seen: set[str] = set()
        self.best = Parameter(value="v", name="best", role="the best value so far")
        self.suffix = "!"


class PluginWithJsonAttributes:
    name = "plugin-json"

    def __init__(self):
        self.calls = 0
        self.word = "LOUDER"
        self.asked: list[list[str]] = []


def test_a_plugin_with_unsaveable_state_is_one_line_naming_the_fix():
    with pytest.raises(ConfigError) as err:
        ckpt.object_state(PluginWithObjects())
    message = str(err.value)
    assert "\n" not in message and "best, seen" in message and "PluginWithObjects.state_dict()" in message
    assert "suffix" not in message  # only the attributes that are the problem are named


def test_a_plugin_with_json_attributes_is_saved_by_them():
    plugin = PluginWithJsonAttributes()
    plugin.calls = 7
    plugin.asked.append(["instruction"])
    state = through_json(ckpt.object_state(plugin))
    fresh = PluginWithJsonAttributes()
    ckpt.restore_object(fresh, state)
    assert fresh.calls == 7 and fresh.word == "LOUDER" and fresh.asked == [["instruction"]]
    with pytest.raises(ConfigError, match="not the ones it has"):
        ckpt.restore_object(fresh, {"attributes": {"calls": 1, "intruder": 2}})


class BadStateDict:
    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = state


@pytest.mark.parametrize("state,where", [({"past": (1, 2)}, "tuple"), ({1: "a"}, "key 1"),
                                         ({"score": float("nan")}, "nan"), ({"x": object()}, "object")])
def test_a_state_dict_that_is_not_plain_json_is_refused_at_save_time(state, where):
    with pytest.raises(ConfigError) as err:
        ckpt.object_state(BadStateDict(state))
    assert where in str(err.value) and "BadStateDict.state_dict()" in str(err.value)


@pytest.mark.parametrize("make,state", [
    (TGD, {"steps_taken": 0, "past": {"p": [{"step": "one", "value": "v", "feedback": "f"}]}}),
    (TGD, {"steps_taken": -1, "past": {}}),
    (OPRO, {"steps_taken": 0, "history": [{"values": {}, "score": "high", "steps": []}]}),
    (OPRO, {"steps_taken": 0}),
    (JointUpdate, {}),
], ids=["tgd-step", "tgd-count", "opro-score", "opro-missing", "joint-empty"])
def test_a_malformed_state_dict_is_one_clear_line(make, state):
    with pytest.raises(ConfigError) as err:
        ckpt.restore_object(make(), {"state_dict": state})
    assert "malformed" in str(err.value) and "\n" not in str(err.value)


def test_outcome_credit_refuses_state_it_never_wrote():
    from credit.outcome import OutcomeCredit
    with pytest.raises(ConfigError, match="malformed"):
        ckpt.restore_object(OutcomeCredit(), {"state_dict": {"anything": 1}})


@pytest.mark.parametrize("state,words", [({"format": 2}, "older version"), ({"format": 1}, "older version"),
                                         ({"format": ckpt.FORMAT + 1}, "newer version"),
                                         ({"format": "3"}, "not a version number"), ([], "not a textgrad-core"),
                                         ({"step": 3}, "no format field")])
def test_check_format_names_what_to_do(state, words):
    with pytest.raises(ConfigError) as err:
        ckpt.check_format(state)
    assert words in str(err.value) and "\n" not in str(err.value)
    ckpt.check_format({"format": ckpt.FORMAT, "optimizer": {"state_dict": {}}})  # the current format passes


def test_a_trainer_with_a_run_dir_refuses_unsaveable_state_before_any_call(tmp_path):
    """The first checkpoint would fail after the initial evaluation was paid for; the trainer says so at once."""
    from tasks.layered import LayeredTask
    from textgrad_core.engines import EngineSet
    from textgrad_core.rundir import RunDir
    from textgrad_core.trainer import Trainer, TrainerConfig

    asked: list[str] = []
    backend = ScriptedBackend(reply_fn=lambda request: asked.append(request.user_text) or "Answer: 1")
    engines = EngineSet({"forward": {"provider": "scripted", "model": "m", "cache": {"enabled": False}}},
                        scripted=backend)
    with pytest.raises(ConfigError, match=r"PluginWithObjects\.state_dict\(\)"):
        Trainer(LayeredTask(), engines, PluginWithObjects(), TGD(), TrainerConfig(progress=False),
                run=RunDir(tmp_path / "run", simulated=True))
    assert asked == []
    # Without a run directory nothing is checkpointed, so nothing is refused.
    Trainer(LayeredTask(), engines, PluginWithObjects(), TGD(), TrainerConfig(progress=False))
