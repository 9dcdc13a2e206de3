"""Gold answers, written in each protocol's answer format (the format the simulator is told to use), score 1.0 on
every shipped example under every protocol of every task; and one simulated optimization step runs and scores
under each protocol."""
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.run import run_experiment
from tasks import bbh as bbh_module
from tasks.bbh import BBHTask
from tasks.bbh_data import SUBTASKS, load_bbh
from tasks.bbh_object_counting import ObjectCountingTask, parse_integer_answer
from tasks.bbh_word_sorting import WordSortingTask, parse_sorted_words
from tasks.gsm8k import GSM8KTask, load_gsm8k
from tasks.hotpotqa_rag import HotpotQARAGTask, answer_field_with_sources, answer_with_sources, load_hotpotqa
from tasks.protocols import textgrad, trace
from textgrad_core.task import Splits

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def gold_reply(task, examples, target):
    """What a right answer looks like under the task's protocol: the simulator's layout and answer format."""
    world = task.sim_world(Splits(train=examples[:1], val=examples[:1], test=examples[:1]))
    return f"I worked through the problem.\n{world.answer_format.format(answer=target)}"


def extractor(code):
    namespace: dict = {}
    exec(code, namespace)  # the task's own fixed starting code (never model-written), so no sandbox is needed
    return namespace["extract_answer"]


def all_bbh():
    return [e for subtask in SUBTASKS for e in load_bbh(subtask)]


def failures(task, examples, post):
    """Ids of the examples whose gold reply, through the task's post-processing `post` and metric, is not 1.0."""
    bad = []
    for e in examples:
        score = task.metric(post(gold_reply(task, examples, e.target)), e).score
        if score != 1.0:
            bad.append(e.id)
    return bad


@pytest.mark.parametrize("protocol", ["strict", "textgrad"])
def test_object_counting_gold(protocol):
    task = ObjectCountingTask(protocol=protocol)
    examples = load_bbh("object_counting")
    post = (lambda r: parse_integer_answer(r).value) if protocol == "strict" else (lambda r: r)
    assert len(examples) == 250 and failures(task, examples, post) == []


def test_word_sorting_gold_strict():
    task = WordSortingTask()
    examples = load_bbh("word_sorting")
    assert failures(task, examples, lambda r: parse_sorted_words(r).value) == []


def test_word_sorting_gold_textgrad_reaches_the_judge_whole():
    # TextGrad's score comes from an LLM judge: offline, check that every judge request carries the question, the
    # ground truth and the gold reply in their fields (the verdict itself is the judge model's).
    task = WordSortingTask(protocol="textgrad")
    examples = load_bbh("word_sorting")
    for e in examples:
        reply = gold_reply(task, examples, e.target)
        user = textgrad.judge_request(e.input, e.target, reply, "t").user_text
        assert f"**Ground truth answer**: {e.target}\n" in user
        assert user.endswith(f"**Reasoning and prediction from the language model**: {reply}")


@pytest.mark.parametrize("protocol", ["strict", "textgrad"])
def test_gsm8k_gold(protocol):
    task = GSM8KTask(protocol=protocol)
    data = load_gsm8k()
    examples = data["train"] + data["test"]
    assert len(examples) == 7473 + 1319 and failures(task, examples, lambda r: r) == []


@pytest.mark.parametrize("protocol,code", [("strict", bbh_module.INITIAL_EXTRACT_CODE), ("trace", trace.EXTRACT_CODE)])
def test_bbh_gold_on_all_27_subtasks(protocol, code):
    task = BBHTask(subtask="date_understanding", protocol=protocol)
    examples = all_bbh()
    assert len({e.id.rsplit("-", 1)[0] for e in examples}) == 27
    assert failures(task, examples, extractor(code)) == []


@pytest.mark.parametrize("protocol,post", [("strict", answer_with_sources), ("gepa", answer_field_with_sources)])
def test_hotpotqa_gold(protocol, post):
    task = HotpotQARAGTask(protocol=protocol)
    examples = load_hotpotqa()
    assert len(examples) == 53 and failures(task, examples, lambda r: post(r, "", "").value) == []


# ---- one simulated step per protocol ---------------------------------------------------------------------

SMALL = {
    "bbh_object_counting": ["++task.n_train=3", "++task.n_val=4"],
    "bbh_word_sorting": ["++task.n_train=3", "++task.n_val=4"],
    "gsm8k": ["++task.n_train=3", "++task.n_val=4", "task.test_size=2"],
    "bbh": ["task.subtask=navigate", "++task.n_train=3", "++task.n_val=4"],
    "hotpotqa_rag": ["++task.n_train=3", "++task.n_val=4", "task.n_test=2"],
}
RUNS = [("bbh_object_counting", "strict"), ("bbh_object_counting", "textgrad"), ("bbh_word_sorting", "strict"),
        ("bbh_word_sorting", "textgrad"),
        ("gsm8k", "strict"), ("gsm8k", "textgrad"), ("bbh", "strict"),
        ("bbh", "trace"), ("hotpotqa_rag", "strict"), ("hotpotqa_rag", "gepa")]


@pytest.mark.parametrize("task,protocol", RUNS)
def test_one_simulated_step_scores_under_each_protocol(task, protocol, tmp_path):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "trainer.progress=false", f"run_dir={tmp_path}", f"task={task}", f"task.protocol={protocol}",
            "trainer.max_steps=1", "trainer.batch_size=3", "trainer.test_size=2", *SMALL[task]])
    summary = run_experiment(cfg)
    assert summary["status"] == "completed" and summary["simulated"] and summary["steps"] == 1
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    initial = next(m for m in metrics if m.get("decision") == "initial")
    # The simulator answers in the protocol's format, so its right answers score: some validation example is right.
    assert initial["n_val_scored"] == 4 and initial["val_score"] > 0, initial
