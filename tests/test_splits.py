"""Splits are checked at load: sizes in range and within the data, non-empty, disjoint; bad data names file and line."""
import gzip
import json
import shutil
from pathlib import Path

import pytest

from tasks.bbh import BBHTask
from tasks.bbh_data import DATA_DIR as BBH_DIR
from tasks.bbh_object_counting import ObjectCountingTask
from tasks.gsm8k import DATA_DIR as GSM8K_DIR
from tasks.gsm8k import GSM8KTask
from tasks.hotpotqa_rag import DATA_PATH as HOTPOT_PATH
from tasks.hotpotqa_rag import HotpotQARAGTask
from tasks.humaneval import HumanEvalTask, humaneval_data_file
from tasks.layered import LayeredTask
from tasks.registry import load_task
from tasks.tool_use import ToolUseTask
from textgrad_core.errors import ConfigError
from textgrad_core.loss import MetricResult
from textgrad_core.task import (DataError, Example, Splits, Task, check_fits, check_size, check_splits, read_json,
                                read_jsonl)


def ex(i, text=None, split="x"):
    return Example(id=f"{split}-{i}", input=text if text is not None else f"question {split} {i}", target="1")


def splits(train, val, test):
    return Splits(train=train, val=val, test=test)


# ---- check_splits --------------------------------------------------------------------------------------------

def test_disjoint_non_empty_splits_pass():
    check_splits(splits([ex(0, split="a")], [ex(0, split="b")], [ex(0, split="c")]), "t")


@pytest.mark.parametrize("empty", ["train", "val", "test"])
def test_an_empty_split_is_an_error_naming_it(empty):
    parts = {name: [ex(0, split=name)] for name in ("train", "val", "test")}
    parts[empty] = []
    with pytest.raises(DataError, match=f"the {empty} split is empty"):
        check_splits(Splits(**parts), "t")


def test_an_empty_test_split_passes_only_when_the_task_allows_it():
    s = splits([ex(0, split="a")], [ex(0, split="b")], [])
    check_splits(s, "t", allow_empty_test=True)
    with pytest.raises(DataError, match="test split is empty"):
        check_splits(s, "t")


def test_a_leak_by_id_names_both_splits_the_count_and_an_example():
    train = [ex(i, split="a") for i in range(5)]
    test = [Example(id="a-3", input="something else", target="1"), Example(id="a-4", input="other", target="1")]
    with pytest.raises(DataError) as info:
        check_splits(splits(train, [ex(0, split="v")], test), "demo")
    message = str(info.value)
    assert "train and test" in message and "2 example(s)" in message and "a-3" in message
    assert isinstance(info.value, ConfigError) and "\n" not in message


def test_a_leak_by_input_text_is_found_across_whitespace_differences():
    train = [ex(0, "How many  apples\ndo I have?", split="a")]
    val = [ex(0, " How many apples do I have? ", split="b")]
    with pytest.raises(DataError, match=r"1 example\(s\) are in both train and val \(e\.g\. a-0"):
        check_splits(splits(train, val, [ex(0, split="c")]), "t")


def test_structured_inputs_compare_by_value_not_key_order():
    val = [Example(id="v", input={"a": 1, "b": [1, 2]}, target=1)]
    test = [Example(id="t", input={"b": [1, 2], "a": 1}, target=1)]
    with pytest.raises(DataError, match="val and test"):
        check_splits(splits([ex(0)], val, test), "t")


def test_overlap_is_allowed_only_when_declared():
    same = [ex(0)]
    check_splits(splits(same, same, same), "t", allow_overlap=True)
    with pytest.raises(DataError, match="data leak"):
        check_splits(splits(same, same, same), "t")


def test_load_splits_returning_something_else_is_named():
    with pytest.raises(DataError, match="not a textgrad_core.task.Splits"):
        check_splits({"train": []}, "t")


# ---- size options ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -3, "5", 2.0, True, None])
def test_a_size_must_be_a_positive_integer(value):
    with pytest.raises(ConfigError, match=r"task\.n_train=.*: must be an integer >= 1\.$"):
        check_size("n_train", value)


def test_an_optional_size_may_be_null_but_not_zero():
    check_size("test_size", None, optional=True)
    with pytest.raises(ConfigError, match="test_size=0: must be an integer >= 1 or null"):
        check_size("test_size", 0, optional=True)


def test_sizes_beyond_the_data_name_the_source_counts_and_maximum():
    with pytest.raises(DataError) as info:
        check_fits({"n_train": 1_000_000, "n_val": 100}, 250, "data.json", rest="test")
    assert str(info.value) == ("data.json has 250 examples but the splits need 1000101 (task.n_train=1000000 + "
                               "task.n_val=100 + at least 1 for test): task.n_train can be at most 149.")
    check_fits({"n_train": 149, "n_val": 100}, 250, "data.json", rest="test")  # exactly fits


def test_sizes_that_cannot_fit_by_one_option_ask_to_lower_all():
    with pytest.raises(DataError, match="has 10 examples but the splits need 151 .*lower task.n_train \\+ "
                                        "task.n_val to at most 9 together"):
        check_fits({"n_train": 50, "n_val": 100}, 10, "f.json", rest="test")


@pytest.mark.parametrize("cfg, match", [
    ({"name": "bbh_object_counting", "n_train": -3}, "task.n_train=-3: must be an integer >= 1"),
    ({"name": "bbh_object_counting", "n_val": 0}, "task.n_val=0"),
    ({"name": "bbh_word_sorting", "n_val": -10}, "task.n_val=-10"),
    ({"name": "bbh", "n_train": 0}, "task.n_train=0"),
    ({"name": "gsm8k", "test_size": -5}, "task.test_size=-5: must be an integer >= 1 or null"),
    ({"name": "hotpotqa_rag", "n_test": 0}, "task.n_test=0"),
    ({"name": "tool_use", "n_test": -1}, "task.n_test=-1"),
    ({"name": "battleship", "budget": 0}, "task.budget=0"),
    ({"name": "layered", "n_val": -2}, "task.n_val=-2: must be an integer >= 1 or null"),
])
def test_task_constructors_reject_sizes_out_of_range(cfg, match):
    with pytest.raises(ConfigError, match=match):
        load_task(cfg)


def test_the_negative_n_train_of_issue_8_no_longer_moves_test_examples_into_training():
    # Before: rows[:-3] gave 247 training examples, 150 of them from the test split.
    with pytest.raises(ConfigError, match="task.n_train=-3"):
        ObjectCountingTask(n_train=-3)
    default = ObjectCountingTask().checked_splits()
    assert default.sizes() == {"train": 50, "val": 100, "test": 100}


@pytest.mark.parametrize("task, match", [
    (lambda: ObjectCountingTask(n_train=1_000_000), r"object_counting.json has 250 examples .*: task.n_train can be at most 149"),
    (lambda: GSM8KTask(n_train=7400), r"train.jsonl has 7473 examples .*: task.n_train can be at most 7173"),
    (lambda: GSM8KTask(test_size=2000), r"test.jsonl has 1319 examples .*: task.test_size can be at most 1319"),
    (lambda: HotpotQARAGTask(n_test=100), r"has 53 examples .*: task.n_test can be at most 20"),
    (lambda: HumanEvalTask(n_train=200), r"HumanEval.jsonl.gz has 164 examples .*: task.n_train can be at most 123"),
    (lambda: LayeredTask(base="bbh_object_counting", test_size=101), r"test_size can be at most 100"),
    (lambda: ToolUseTask(n_train=1000), r"yields only \d+ distinct requests .* need 1090"),
])
def test_sizes_larger_than_the_data_name_the_maximum(task, match):
    with pytest.raises(DataError, match=match):
        task().checked_splits()


def test_every_shipped_task_loads_disjoint_non_empty_splits():
    for name in ("bbh_object_counting", "bbh_word_sorting", "bbh", "gsm8k", "layered", "hotpotqa_rag", "tool_use",
                 "battleship", "humaneval"):
        sizes = load_task(name).checked_splits().sizes()
        assert min(sizes.values()) >= 1, name


def test_humaneval_instance_mode_shares_its_one_problem_on_purpose():
    task = HumanEvalTask(mode="instance", problem=3)
    assert task.checked_splits().sizes() == {"train": 1, "val": 1, "test": 1}


def test_a_task_overriding_only_loss_needs_no_metric():
    class LossOnly(Task):
        def load_splits(self):
            return splits([ex(0, split="a")], [ex(0, split="b")], [ex(0, split="c")])

        def initial_parameters(self):
            return []

        async def forward(self, example, params, engines):
            return None

        async def loss(self, prediction, example, engines):
            return MetricResult(score=1.0, feedback="ok")

    task = LossOnly()
    assert task.checked_splits().sizes()["train"] == 1
    with pytest.raises(NotImplementedError, match="override metric\\(\\) or loss\\(\\)"):
        Task.metric(task, "x", ex(0))


# ---- malformed data files --------------------------------------------------------------------------------------

def _gsm8k_copy(tmp_path, bad_line=None, text="{not json"):
    lines = (GSM8K_DIR / "train.jsonl").read_text(encoding="utf-8").splitlines()
    if bad_line is not None:
        lines[bad_line - 1] = text
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(GSM8K_DIR / "test.jsonl", tmp_path / "test.jsonl")
    return tmp_path


def test_a_bad_jsonl_line_names_the_file_and_line(tmp_path):
    _gsm8k_copy(tmp_path, bad_line=17)
    with pytest.raises(DataError) as info:
        GSM8KTask(data_dir=str(tmp_path)).checked_splits()
    assert "train.jsonl line 17: not valid JSON (" in str(info.value) and "\n" not in str(info.value)


def test_a_jsonl_record_without_an_answer_names_the_line(tmp_path):
    _gsm8k_copy(tmp_path, bad_line=5, text=json.dumps({"question": "q"}))
    with pytest.raises(DataError, match="train.jsonl line 5 is not a GSM8K file line"):
        GSM8KTask(data_dir=str(tmp_path)).checked_splits()


def test_read_jsonl_counts_lines_from_one_and_skips_blank_ones(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n[oops\n')
    with pytest.raises(DataError, match=r"d.jsonl line 4: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(path) == [(1, {"a": 1}), (3, {"a": 2})]


def test_a_bad_gzipped_humaneval_line_names_the_file_and_line(tmp_path):
    with gzip.open(humaneval_data_file(), "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    lines[9] = lines[9][:40]
    bad = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"HumanEval.jsonl.gz line 10: not valid JSON"):
        HumanEvalTask(data_file=str(bad))


def test_a_bbh_file_that_is_not_json_names_its_line(tmp_path):
    data = json.loads((BBH_DIR / "object_counting.json").read_text(encoding="utf-8"))
    lines = json.dumps(data, indent=1).splitlines()
    lines[6] = lines[6].rstrip(",")  # "},"\n"{" loses its comma: the error is on line 8
    (tmp_path / "object_counting.json").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"object_counting.json line 8: not valid JSON \(Expecting ',' delimiter"):
        ObjectCountingTask(data_dir=str(tmp_path)).checked_splits()


def test_a_bbh_file_with_too_few_rows_names_file_rows_found_and_needed(tmp_path):
    data = json.loads((BBH_DIR / "object_counting.json").read_text(encoding="utf-8"))
    data["examples"] = data["examples"][:10]
    (tmp_path / "object_counting.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError) as info:
        ObjectCountingTask(data_dir=str(tmp_path)).checked_splits()
    assert "object_counting.json has 10 examples but the splits need 151" in str(info.value)
    small = ObjectCountingTask(data_dir=str(tmp_path), n_train=5, n_val=4).checked_splits()
    assert small.sizes() == {"train": 5, "val": 4, "test": 1}


def test_a_bbh_example_without_a_target_is_named(tmp_path):
    data = json.loads((BBH_DIR / "navigate.json").read_text(encoding="utf-8"))
    del data["examples"][7]["target"]
    (tmp_path / "navigate.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match="navigate.json example 7: not a BBH example"):
        BBHTask(subtask="navigate", data_dir=str(tmp_path)).checked_splits()


def test_a_bbh_file_with_a_question_twice_is_a_leak(tmp_path):
    data = json.loads((BBH_DIR / "object_counting.json").read_text(encoding="utf-8"))
    data["examples"][200] = dict(data["examples"][3])  # a training question again in the test split
    (tmp_path / "object_counting.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match=r"data leak, 1 example\(s\) are in both train and test \(e\.g\. "
                                        r"object_counting-3"):
        ObjectCountingTask(data_dir=str(tmp_path)).checked_splits()


def test_a_hotpotqa_file_that_is_not_json_names_its_line(tmp_path):
    lines = Path(HOTPOT_PATH).read_text(encoding="utf-8").splitlines() or ["["]
    bad = tmp_path / "hotpot.json"
    bad.write_text("\n".join(lines + ["}"]), encoding="utf-8")
    with pytest.raises(DataError, match=r"hotpot.json line \d+: not valid JSON"):
        HotpotQARAGTask(data_path=str(bad)).checked_splits()


def test_read_json_names_the_line_of_the_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{\n  "a": 1,\n  "b": oops\n}\n')
    with pytest.raises(DataError, match=r"x.json line 3: not valid JSON"):
        read_json(path)
