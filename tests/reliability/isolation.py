"""Test-split isolation, checked on a run's own logs: no test input in any call that can change a parameter."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

from experiments.factory import load_task

GUARDED_PHASES = ("forward", "credit", "optimizer", "validation")
MIN_INPUT_CHARS = 20  # shorter inputs ("3", "yes") would match by chance; no shipped test input is that short


def _input_texts(value: Any) -> list[str]:
    # A question is what identifies an example; shared context passages (HotpotQA) would match across examples.
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        for key in ("question", "prompt", "input", "text"):
            if isinstance(value.get(key), str):
                return [value[key]]
    return []


@functools.lru_cache(maxsize=None)
def _test_inputs_of(task_yaml: str) -> frozenset[str]:
    task = load_task(yaml.safe_load(task_yaml))
    splits = task.checked_splits()
    texts = lambda examples: {t.strip() for ex in examples for t in _input_texts(ex.input)}  # noqa: E731
    # A task may share an input across splits on purpose (HumanEval instance mode: one problem, the test split holds
    # its hidden tests as the target); only an input the test split alone holds is a test input.
    only_test = texts(splits.test) - texts(splits.train) - texts(splits.val)
    return frozenset(t for t in only_test if len(t) >= MIN_INPUT_CHARS)


def test_inputs(run_dir: Path) -> frozenset[str]:
    """The input texts of the whole test split of the run's task, from the run's own config.yaml."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    return _test_inputs_of(yaml.safe_dump(config["task"], sort_keys=True))


def scan(run_dir: Path) -> dict[str, Any]:
    """Counts of calls, guarded calls and test inputs found in guarded calls of one run directory."""
    inputs = test_inputs(run_dir)
    calls = guarded = seen_in_test = 0
    leaks: list[dict] = []
    path = run_dir / "calls.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        if not line.strip():
            continue
        call = json.loads(line)
        calls += 1
        text = "\n".join(m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
                         for m in call.get("messages", []))
        if call.get("split") == "test":  # the positive control: the scanner does find test inputs where they belong
            seen_in_test += any(t in text for t in inputs)
            if call.get("phase") in ("credit", "optimizer"):  # no call that changes a parameter may run on test
                leaks.append({"request_id": call.get("request_id"), "phase": call["phase"], "input": "(test split)"})
            continue
        if call.get("phase") not in GUARDED_PHASES:
            continue
        guarded += 1
        leaks += [{"request_id": call.get("request_id"), "phase": call["phase"], "input": t[:80]}
                  for t in inputs if t in text]
    return {"calls": calls, "guarded_calls": guarded, "test_inputs": len(inputs), "test_calls_with_inputs": seen_in_test,
            "leaks": leaks}
