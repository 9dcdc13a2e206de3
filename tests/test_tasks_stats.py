"""The data figures quoted by docs/tasks.md, tasks/data/README.md and tasks/humaneval.py are those `python -m
tasks.stats` computes from the shipped files."""
from pathlib import Path

from tasks import stats

ROOT = Path(__file__).resolve().parents[1]


def test_figures_come_from_the_data():
    data = stats.figures()
    assert len(data["bbh"]) == 27 and data["bbh"]["snarks"] == 178 and data["bbh"]["object_counting"] == 250
    assert data["humaneval"]["fewer_than_two_asserts"] == ["HumanEval/32", "HumanEval/34", "HumanEval/38",
                                                           "HumanEval/50"]
    assert data["splits"]["bbh"] == {"train": 15, "val": 5, "test": 230}


def test_docs_quote_the_computed_figures():
    data = stats.figures()
    readme = (ROOT / "tasks" / "data" / "README.md").read_text()
    tasks_doc = (ROOT / "docs" / "tasks.md").read_text()
    humaneval_doc = (ROOT / "tasks" / "humaneval.py").read_text()
    for subtask, n in data["bbh"].items():
        if n != 250:
            assert f"{subtask} ({n})" in readme
    total = f"{sum(data['bbh'].values()):,}"
    assert f"{total} examples" in readme and f"{total} examples" in tasks_doc
    assert f"`train.jsonl` ({data['gsm8k']['train']:,})" in readme and f"({data['gsm8k']['test']:,})" in readme
    assert f"first {data['hotpotqa']} questions" in readme
    he = data["humaneval"]
    assert f"({len(he['fewer_than_two_asserts'])} of {he['problems']}" in humaneval_doc
    assert f"HumanEval, {he['problems']} problems" in tasks_doc
    for task, s in data["splits"].items():
        if task in ("bbh_object_counting", "bbh_word_sorting", "humaneval", "tool_use", "hotpotqa_rag"):
            phrasings = (f"{s['train']} / {s['val']} / {s['test']}", f"{s['train']} train / {s['val']} val / {s['test']} test",
                         f"first {s['train']} train / next {s['val']} val / last {s['test']} test")
            assert any(p in tasks_doc for p in phrasings), task


def test_the_command_prints_every_figure(capsys):
    assert stats.main([]) == 0
    out = capsys.readouterr().out
    assert "BBH: snarks holds 178 examples" in out and "HumanEval: 164 problems; 4 with fewer" in out
