"""The numbers docs/tasks.md and tasks/data/README.md quote about the shipped data and the default splits.

Run `python -m tasks.stats`: it prints each figure with the sentence it supports, read from the data files and
the tasks themselves (nothing is typed in by hand), so the docs can be checked and regenerated.
"""
from __future__ import annotations

import ast
import sys
from typing import Any

from tasks.bbh_data import SUBTASKS, load_bbh
from tasks.registry import load_task


def top_level_asserts(test: str) -> int:
    """How many assert statements sit directly in the body of the test source's `check` function."""
    tree = ast.parse(test)
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    return sum(isinstance(n, ast.Assert) for n in check.body) if check else 0


def bbh_sizes() -> dict[str, int]:
    """Examples per shipped BBH sub-task file."""
    return {subtask: len(load_bbh(subtask)) for subtask in SUBTASKS}


def humaneval_figures() -> dict[str, Any]:
    """HumanEval's problem count and the problems with fewer than two top-level asserts (no hidden half)."""
    from tasks.humaneval import load_problems

    problems = load_problems()
    few = [p["task_id"] for p in problems if top_level_asserts(p["test"]) < 2]
    return {"problems": len(problems), "fewer_than_two_asserts": few}


def split_sizes(task: str) -> dict[str, int]:
    """Train/val/test sizes of a task with its default options."""
    return load_task({"name": task}).checked_splits().sizes()


def figures() -> dict[str, Any]:
    """Every figure the docs quote, by name."""
    from tasks.gsm8k import load_gsm8k
    from tasks.hotpotqa_rag import load_hotpotqa

    gsm8k = load_gsm8k()
    tasks = ("bbh_object_counting", "bbh_word_sorting", "bbh", "gsm8k", "hotpotqa_rag", "humaneval", "tool_use",
             "battleship")
    return {"bbh": bbh_sizes(), "gsm8k": {k: len(v) for k, v in gsm8k.items()}, "hotpotqa": len(load_hotpotqa()),
            "humaneval": humaneval_figures(), "splits": {t: split_sizes(t) for t in tasks}}


def report(data: dict[str, Any]) -> list[str]:
    """The figures as lines of text, one claim each."""
    sizes = data["bbh"]
    full = [s for s, n in sizes.items() if n == 250]
    lines = [f"BBH: {len(sizes)} sub-task files, {sum(sizes.values())} examples; {len(full)} files hold 250 examples"]
    lines += [f"BBH: {s} holds {n} examples" for s, n in sizes.items() if n != 250]
    lines.append(f"GSM8K: train.jsonl {data['gsm8k']['train']}, test.jsonl {data['gsm8k']['test']}")
    lines.append(f"HotpotQA sample: {data['hotpotqa']} questions")
    he = data["humaneval"]
    lines.append(f"HumanEval: {he['problems']} problems; {len(he['fewer_than_two_asserts'])} with fewer than two "
                 f"top-level asserts ({', '.join(he['fewer_than_two_asserts'])})")
    for task, s in data["splits"].items():
        lines.append(f"split {task}: {s['train']} train / {s['val']} val / {s['test']} test")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print every figure."""
    print("\n".join(report(figures())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
