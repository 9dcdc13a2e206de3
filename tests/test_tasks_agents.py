"""The agent tasks (tool_use, battleship) and the plug-in example: data, metrics, error nodes, games, one step via Hydra."""
import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from credit.backprop import Backprop
from experiments.run import plug_in_overrides, run_experiment
from tasks import battleship as bs
from tasks import tool_use as tu
from tasks.registry import load_task
from textgrad_core.credit import ExampleTrace
from textgrad_core.engines import EngineSet
from textgrad_core.errors import ConfigError
from textgrad_core.graph import Graph
from textgrad_core.variable import ParameterSet, Tape
from tests.battleship_policies import HUNT_ACT, HUNT_REASON
from tests.scripted import scripted_engine

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "tests" / "plugin_example"


def run_forward(task, example, params, engines):
    """One traced forward pass and its loss, as the trainer records it."""
    async def main():
        with Tape(example.id) as tape:
            out = await task.forward(example, params, engines)
            loss = await task.loss(out, example, engines)
        return ExampleTrace(example.id, out, loss, Graph(tape.variables + [out, loss]))
    return asyncio.run(main())


# ---- tool_use: data -------------------------------------------------------------------------------------------------

def test_tool_use_data_is_seeded_balanced_and_answered_by_the_tools():
    splits = tu.ToolUseTask().load_splits()
    assert splits.sizes() == {"train": 30, "val": 30, "test": 60}
    again, other = tu.ToolUseTask(seed=0).load_splits(), tu.ToolUseTask(seed=1).load_splits()
    assert [(e.id, e.input, e.target) for e in again.test] == [(e.id, e.input, e.target) for e in splits.test]
    assert [e.input for e in other.train] != [e.input for e in splits.train]
    every = splits.train + splits.val + splits.test
    assert len({e.input for e in every}) == 120 and len({e.id for e in every}) == 120
    for part, n in ((splits.train, 5), (splits.val, 5), (splits.test, 10)):
        assert sorted(e.meta["kind"] for e in part) == sorted(tu.KINDS * n)
    for e in every:  # the expected call runs to the target; the sim's wrong call does not
        call, wrong = json.loads(e.meta["call"]), json.loads(e.meta["wrong_call"])
        assert (call["tool"], call["args"]) == (e.meta["tool"], e.meta["args"])
        assert tu.execute(call["tool"], call["args"]) == e.target
        try:
            assert tu.execute(wrong["tool"], wrong["args"]) != e.target
        except (KeyError, ValueError, TypeError):
            pass


def test_tools_compute_known_answers_and_reject_bad_arguments():
    assert tu.execute("convert_units", {"value": 10, "from_unit": "km", "to_unit": "mi"}) == "6.21 mi"
    assert tu.execute("convert_units", {"value": 100, "from_unit": "C", "to_unit": "F"}) == "212 F"
    assert tu.execute("add_days", {"date": "2024-02-28", "days": 2}) == "2024-03-01"
    assert tu.execute("add_days", {"date": "2024-01-10", "days": -10}) == "2023-12-31"
    assert tu.execute("days_between", {"start": "2024-01-01", "end": "2024-03-01"}) == "60"
    assert tu.execute("lookup", {"table": "capital", "key": "kenya"}) == "Nairobi"
    assert tu.execute("lookup", {"table": "element_symbol", "key": "Sodium"}) == "Na"
    assert tu.execute("calculate", {"expression": "(42 - 35) / 2"}) == "3.5"
    for tool, args, message in [
        ("convert_units", {"value": 5, "from_unit": "pounds", "to_unit": "kg"}, "unknown unit 'pounds'"),
        ("convert_units", {"value": 5, "from_unit": "kg", "to_unit": "km"}, "cannot convert mass"),
        ("add_days", {"date": "March 3, 2024", "days": 1}, "must be an ISO date YYYY-MM-DD"),
        ("lookup", {"table": "capitals", "key": "Peru"}, "unknown table 'capitals'"),
        ("calculate", {"expression": "17 times 3"}, "only numbers"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            tu.execute(tool, args)


# ---- tool_use: metric, parsing, error nodes -------------------------------------------------------------------------

def example_of(kind, split="test"):
    return next(e for e in getattr(tu.ToolUseTask().load_splits(), split) if e.meta["kind"] == kind)


def test_tool_use_metric_names_the_wrong_tool_or_the_bad_argument():
    task, ex = tu.ToolUseTask(), example_of("units")
    right = task.metric({"tool": "convert_units", "args": ex.meta["args"], "result": ex.target}, ex)
    assert right.score == 1.0 and right.feedback.startswith("Correct")
    wrong_tool = task.metric({"tool": "calculate", "args": {"expression": "5"}, "result": "5"}, ex)
    assert wrong_tool.score == 0.0
    assert "wrong tool 'calculate'" in wrong_tool.feedback and "needs convert_units(" in wrong_tool.feedback
    bad_args = dict(ex.meta["args"], to_unit="K" if ex.meta["args"]["to_unit"] != "K" else "C")
    bad = task.metric({"tool": "convert_units", "args": bad_args, "result": "1 K"}, ex)
    assert bad.score == 0.0 and f"Argument 'to_unit' of convert_units was {bad_args['to_unit']!r}" in bad.feedback
    assert "from_unit" not in bad.feedback.split("The expected call")[0]  # only the differing argument is named
    calc = example_of("arithmetic")  # an equivalent expression written differently is not a bad argument
    spaced = calc.meta["args"]["expression"].replace(" ", "")
    assert "Argument" not in task.metric({"tool": "calculate", "args": {"expression": spaced}, "result": "?"}, calc).feedback
    assert task.metric(ex.target, ex).score == 1.0 and task.metric("nonsense", ex).score == 0.0


def test_parse_tool_call_takes_the_last_json_call_and_rejects_replies_without_one():
    reply = 'Thinking {"not": "a call"} then {"tool": "lookup", "args": {"table": "capital", "key": "Peru"}}'
    assert tu.parse_tool_call(reply).value == {"tool": "lookup", "args": {"table": "capital", "key": "Peru"}}
    missing = tu.parse_tool_call("I would use the lookup tool.")
    assert missing.is_error and "no JSON tool call" in missing.op.error
    assert tu.parse_tool_call('{"tool": "lookup", "args": [1]}').is_error


def test_a_bad_tool_call_becomes_an_error_node_whose_message_reaches_the_feedback_and_credit():
    task, ex = tu.ToolUseTask(), example_of("units", "train")
    params = ParameterSet(task.initial_parameters())
    bad = json.dumps({"tool": "convert_units", "args": dict(ex.meta["args"], from_unit="furlongs")})
    forward_engine, _ = scripted_engine(reply_fn=lambda r: f"Sure.\n{bad}")
    trace = run_forward(task, ex, params, {"forward": forward_engine})
    assert trace.output.is_error and trace.output.op.name == "run_tool"
    assert "unknown unit 'furlongs'" in trace.output.op.error
    assert trace.loss.score == 0.0 and "unknown unit 'furlongs'" in trace.loss.value
    credit_engine, backend = scripted_engine(reply_fn=lambda r: "Say which unit codes convert_units accepts.")
    result = asyncio.run(Backprop().assign([trace], list(params), credit_engine))
    assert set(result.feedback) == {p.id for p in params}  # every tool definition and the instruction get credit
    assert any("unknown unit 'furlongs'" in r.user_text and "<ERROR>" in r.user_text for r in backend.requests)
    unknown = json.dumps({"tool": "converter", "args": {}})
    engine, _ = scripted_engine(reply_fn=lambda r: unknown)
    out = run_forward(task, ex, params, {"forward": engine}).output
    assert out.is_error and "unknown tool 'converter'; the tools are convert_units" in out.op.error


def test_sim_answers_with_tool_calls_and_its_accuracy_rises_with_the_guidance():
    task = tu.ToolUseTask()
    splits = task.load_splits()
    engines = EngineSet({"forward": {"provider": "sim", "model": "sim-1", "cache": {"enabled": False}}},
                        sim_world=task.sim_world(splits))

    def accuracy(params):
        return sum(run_forward(task, e, params, engines).score for e in splits.val) / len(splits.val)

    initial = ParameterSet(task.initial_parameters())
    guided = ParameterSet(task.initial_parameters())
    for item in tu.RUBRIC:
        assert item.applies_to and all(pid in guided for pid in item.applies_to)
        assert not any(k.lower() in str(initial[pid].value).lower() for pid in item.applies_to for k in item.keywords)
        guided[item.applies_to[0]].value += " " + item.guidance
    low, high = accuracy(initial), accuracy(guided)
    assert low < 0.45 and high > 0.9


# ---- battleship: boards, game engine, metric ------------------------------------------------------------------------

def test_battleship_boards_are_seeded_and_valid():
    task = bs.BattleshipTask()
    splits = task.load_splits()
    assert splits.sizes() == {"train": 5, "val": 5, "test": 10}
    assert [e.target for e in bs.BattleshipTask(seed=0).load_splits().test] == [e.target for e in splits.test]
    assert [e.id for e in bs.BattleshipTask(seed=1).load_splits().train] != [e.id for e in splits.train]
    for e in splits.train + splits.val + splits.test:
        ships = e.target["ships"]
        cells = [tuple(c) for ship in ships for c in ship]
        assert sorted(len(s) for s in ships) == [2, 3, 3, 4] and len(set(cells)) == 12
        assert all(0 <= r < 8 and 0 <= c < 8 for r, c in cells)
        for ship in ships:  # straight and contiguous
            rows, cols = {r for r, _ in ship}, {c for _, c in ship}
            assert len(rows) == 1 or len(cols) == 1
            line = sorted(cols if len(rows) == 1 else rows)
            assert line == list(range(line[0], line[0] + len(ship)))
        assert "ships" not in e.input  # the hidden fleet is never part of the recorded input


TINY = {"size": 3, "budget": 9, "ships": [[[0, 1], [1, 1]]], "fleet": [2]}
SCAN_REASON = '''def reason(observation):
    return {"board": observation["board"], "last": observation["last_shot"]}
'''
SCAN_ACT = '''def act(plan):
    for r, row in enumerate(plan["board"]):
        for c, cell in enumerate(row):
            if cell == ".":
                return [r, c]
'''


def test_game_engine_on_a_tiny_fixed_board():
    record = bs.play_game(SCAN_REASON, SCAN_ACT, TINY)
    assert record["error"] is None
    assert record["shots"] == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]  # stops once the only ship is sunk
    assert "'O..'" in record["plans"][1] and "'miss'" in record["plans"][1]  # the board shows the miss
    assert "'OX.'" in record["plans"][2] and "'hit'" in record["plans"][2]
    report = bs.replay(TINY["ships"], 3, record["shots"])
    assert (report.hits, report.misses, report.ships_sunk, report.hit_rate) == (2, 3, [2], 1.0)

    def play(act_body, reason_body="    return {}\n", budget=3):
        source = f"def act(plan):\n{act_body}"
        return bs.play_game(f"def reason(observation):\n{reason_body}", source, dict(TINY, budget=budget))

    repeated = play("    return [0, 1]\n")
    assert repeated["shots"] == [[0, 1]] * 3 and bs.replay(TINY["ships"], 3, repeated["shots"]).repeated == 2
    assert play("    return (5, 0)\n")["shots"] == [[5, 0]] * 3
    assert play("    return 'A1'\n")["shots"] == ["'A1'"] * 3
    crashed = play("    return [0, 0]\n", reason_body="    return 1 / 0\n")
    assert crashed["shots"] == [] and crashed["error"].startswith("reason raised ZeroDivisionError at turn 1")
    assert "does not define a function named 'act'" in bs.play_game(SCAN_REASON, "x = 1\n", TINY)["error"]
    assert "failed to load: SyntaxError" in bs.play_game("def reason(:\n", SCAN_ACT, TINY)["error"]


def test_battleship_metric_describes_the_game():
    task = bs.BattleshipTask()
    ex = task.load_splits().train[0]
    ship = ex.target["ships"][0]
    shots = [ship[0], ship[0], [9, 9], "'A1'"]
    result = task.metric({"shots": shots, "plans": [], "error": "act raised KeyError at turn 5: 'x'"}, ex)
    assert result.score == pytest.approx(1 / 12)
    for text in ("Hit 1 of 12 ship squares (8%) with 4 of 32 shots", "1 repeated shots", "1 out-of-bounds and 1 invalid",
                 f"First repeated square: {ship[0]}", "First out-of-bounds move: [9, 9]", "First invalid move",
                 "Sank 0 of 4 ships", "The game stopped early: act raised KeyError at turn 5"):
        assert text in result.feedback, text
    every_square = [[r, c] for r in range(8) for c in range(8)]
    full, budgeted = task.metric({"shots": every_square, "error": None}, ex), bs.replay(ex.target["ships"], 8, every_square[:32])
    assert full.score == budgeted.hit_rate < 1.0  # shots past the budget do not count




def test_a_better_policy_scores_higher_than_the_initial_row_scan():
    task = bs.BattleshipTask()
    splits = task.load_splits()
    boards = splits.train + splits.val + splits.test

    def mean(reason, act):
        return sum(task.metric(bs.play_game(reason, act, {**e.input, "ships": e.target["ships"]}), e).score
                   for e in boards) / len(boards)

    assert mean(HUNT_REASON, HUNT_ACT) > mean(bs.INITIAL_REASON, bs.INITIAL_ACT) + 0.15  # 0.69 vs 0.46 on the 20 boards


def test_games_run_in_the_sandbox_and_a_runaway_policy_becomes_an_error_node():
    task = bs.BattleshipTask(timeout_s=1.0)
    ex = task.load_splits().train[0]
    params = ParameterSet(task.initial_parameters())
    trace = run_forward(task, ex, params, None)
    assert not trace.output.is_error and trace.output.op.name == "play_game"
    assert [f for f, _ in trace.output.op.inputs] == ["reason_code", "act_code", "game"]
    assert trace.output.value["shots"] == bs.play_game(bs.INITIAL_REASON, bs.INITIAL_ACT, {**ex.input, **ex.target})["shots"]
    assert {p.id for p in trace.graph.minimal_subgraph(trace.output, list(params)).parameters()} == {"reason", "act"}
    params["act"].value = "def act(plan):\n    while True:\n        pass\n"
    stuck = run_forward(task, ex, params, None)
    assert stuck.output.is_error and stuck.loss.score == 0.0
    assert stuck.output.op.error in stuck.loss.value


# ---- one optimization step through Hydra -----------------------------------------------------------------------------

def compose_config(tmp_path, *overrides):
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
        return compose(config_name="config", overrides=[*overrides, "trainer.max_steps=1", "trainer.val_size=3",
                                                         "trainer.test_size=3", "trainer.progress=false",
                                                         f"run_dir={tmp_path}"])


def gradients(run_dir):
    return [json.loads(line) for line in (run_dir / "gradients.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("credit", ["backprop", "trace"])
def test_tool_use_runs_one_step_on_the_sim(tmp_path, credit):
    summary = run_experiment(compose_config(tmp_path, "task=tool_use", f"credit={credit}"))
    assert summary["task"] == "tool_use" and summary["steps"] == 1 and summary["simulated"]
    assert summary["test"]["final"] is not None
    versions = (tmp_path / "parameters.jsonl").read_text().splitlines()
    assert len(versions) > 6  # six initial versions, then the optimizer's proposals
    if credit == "backprop":  # each definition gets guidance that belongs to its tool (rubric applies_to)
        hints = {item.hint: item.applies_to for item in tu.RUBRIC}
        named = [(g["param"], h) for g in gradients(tmp_path) for h in hints if h in g["feedback"]]
        assert named and all(param in hints[h] for param, h in named)
        assert {g["param"] for g in gradients(tmp_path)} == {"instruction", *(f"tool.{t}" for t in tu.TOOLS)}
    else:
        trace = next(g["trace"] for g in gradients(tmp_path) if g["param"] == "*")
        assert all(f'id="tool.{t}"' in trace for t in tu.TOOLS)


@pytest.mark.parametrize("credit", ["backprop", "trace"])
def test_battleship_runs_one_step_on_the_sim_and_credit_reaches_both_functions(tmp_path, credit):
    summary = run_experiment(compose_config(tmp_path, "task=battleship", f"credit={credit}"))
    assert summary["task"] == "battleship" and summary["steps"] == 1
    assert 0 < summary["val"]["initial"] < 1 and summary["test"]["final"] is not None
    if credit == "backprop":
        assert {g["param"] for g in gradients(tmp_path)} == {"reason", "act"}
    else:
        trace = next(g["trace"] for g in gradients(tmp_path) if g["param"] == "*")
        assert 'id="reason"' in trace and 'id="act"' in trace and "def play_game" in trace


# ---- plugging in a task by import path -------------------------------------------------------------------------------

def test_the_doc_shows_exactly_the_plugin_example_file():
    doc = (ROOT / "docs" / "new-task.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.DOTALL)
    assert len(blocks) == 1 and blocks[0] == (PLUGIN_DIR / "my_tasks.py").read_text()
    assert len(blocks[0].splitlines()) < 80
    assert "python -m experiments.run task._target_=my_tasks.MyTask" in doc


def test_plugin_task_runs_by_import_path_from_the_command_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{PLUGIN_DIR}"}
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "task._target_=my_tasks.MyTask",
                           "trainer.max_steps=1", "trainer.val_size=3", "trainer.test_size=3", "trainer.progress=false",
                           f"run_dir={tmp_path}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task"] == "my_sentiment" and summary["steps"] == 1 and summary["simulated"]
    assert "_target_: my_tasks.MyTask" in (tmp_path / "config.yaml").read_text()
    assert "bbh" not in (tmp_path / "config.yaml").read_text().split("credit:")[0]  # no default task options leak in


def test_task_target_override_selects_the_custom_entry_and_the_registry_prefers_target(monkeypatch):
    assert plug_in_overrides(["task._target_=a.B", "credit=trace"]) == ["task._target_=a.B", "credit=trace", "task=custom"]
    assert plug_in_overrides(["+task._target_=a.B"]) == ["task._target_=a.B", "task=custom"]
    assert plug_in_overrides(["task=tool_use", "task.seed=3"]) == ["task=tool_use", "task.seed=3"]
    assert plug_in_overrides(["task=custom", "task._target_=a.B"]) == ["task=custom", "task._target_=a.B"]
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    assert load_task({"_target_": "my_tasks.MyTask", "name": "my_tasks.MyTask"}).name == "my_sentiment"
    with pytest.raises(ConfigError, match="select task=custom"):
        load_task({"_target_": "my_tasks.MyTask", "name": "bbh_object_counting", "data_dir": None})
    with pytest.raises(ConfigError, match="No task given"):
        load_task({"_target_": None, "name": None})
