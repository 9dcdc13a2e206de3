"""Attacks held, per class: the attack test files (sandbox escapes, forged code, reads, forged verdicts, hostile
replies to every parser, the bad inputs of issue 8) are run in their own pytest process and each test's result is
collected from its JUnit XML, so the figures count what actually ran and held."""
from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
ATTACK_FILES = ("test_sandbox.py", "test_sandbox_forged_code.py", "test_sandbox_reads.py", "test_verdicts.py",
                "test_verdicts_tasks.py", "test_parsers_fuzz.py", "test_validators.py", "test_bad_inputs.py")
# test_verdicts_tasks.py: a test's task, from the words of its name (its class is "forged verdicts: <task>").
VERDICT_TASKS = (("battleship", "battleship"), ("humaneval_sf", "humaneval_sf"),
                 ("sample_filter", "humaneval_sf"), ("math_sympy", "math_sympy"))
# A test's class, from its file and the words of its name (first match wins).
SANDBOX_WORDS = (("forged code", ("forged", "guard", "marshal", "code_object", "codetype")),
                 ("reads", ("read",)), ("writes", ("writ",)),
                 ("processes", ("fork", "process", "subprocess", "exec", "spawn")),
                 ("network", ("socket", "network", "connect")),
                 ("ctypes, signals, threads", ("ctypes", "signal", "thread")),
                 ("environment", ("environment", "env")), ("escape hatches", ("escape", "hatch")),
                 ("resources (time, cpu, memory)", ("memory", "cpu", "loop", "timeout", "time")),
                 ("output floods", ("output", "truncat", "flood")))


def attack_class(file: str, name: str) -> str:
    """The attack class a test belongs to."""
    low = name.lower()
    if file == "test_verdicts.py":
        return "forged verdicts"
    if file == "test_verdicts_tasks.py":
        task = next((task for word, task in VERDICT_TASKS if word in low), "other tasks")
        return f"forged verdicts: {task}"
    if file == "test_parsers_fuzz.py":
        return "hostile replies (every parser, fuzzed)"
    if file == "test_validators.py":
        return "values past their validators"
    if file == "test_bad_inputs.py":
        return "bad inputs (issue 8 table)"
    for cls, words in SANDBOX_WORDS:
        if any(w in low for w in words):
            return f"sandbox: {cls}"
    return "sandbox: results and happy paths"


def collect(junit: Path) -> dict[str, dict]:
    """Per class: tests, held (passed), failed (failure or error), skipped (skip or xfail), and the files."""
    classes: dict[str, dict] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        file = (case.get("file") or case.get("classname", "").replace(".", "/") + ".py").split("/")[-1]
        entry = classes.setdefault(attack_class(file, case.get("name", "")),
                                   {"tests": 0, "held": 0, "failed": 0, "skipped": 0, "files": []})
        entry["tests"] += 1
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            entry["failed"] += 1
        elif "skipped" in tags:
            entry["skipped"] += 1
        else:
            entry["held"] += 1
        if file not in entry["files"]:
            entry["files"].append(file)
    return classes


def test_attack_class_of_a_test():
    assert attack_class("test_sandbox.py", "test_fork_bomb_is_refused") == "sandbox: processes"
    assert attack_class("test_sandbox.py", "test_socket_to_local_listener_fails") == "sandbox: network"
    assert attack_class("test_verdicts.py", "anything") == "forged verdicts"
    assert attack_class("test_verdicts_tasks.py", "test_battleship_attack_scores_zero[exit 0 early-act]") == \
        "forged verdicts: battleship"
    assert attack_class("test_verdicts_tasks.py", "test_sample_filter_attack_fails_the_public_tests[x]") == \
        "forged verdicts: humaneval_sf"


@pytest.mark.reliability_full
def test_every_attack_test_holds(tmp_path, figures):
    present = [f for f in ATTACK_FILES if (TESTS / f).exists()]
    missing = [f for f in ATTACK_FILES if f not in present]
    junit = tmp_path / "attacks.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-o", "junit_family=xunit1",
                           f"--junitxml={junit}", *[str(TESTS / f) for f in present]],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    classes = collect(junit)
    figures.set("attacks", "classes", classes)
    figures.set("attacks", "missing_files", missing)
    issue8 = classes.get("bad inputs (issue 8 table)")
    if issue8:
        figures.add("inputs", "groups", {"name": "issue 8 table, CLI and preflight (tests/test_bad_inputs.py; held = refused as specified or, for good lines, passed)",
                                         "tried": issue8["tests"], "refused": issue8["held"], "accepted": 0,
                                         "tracebacks": issue8["failed"]})
    assert sum(c["tests"] for c in classes.values()) > 60, proc.stdout[-2000:]
    failed = {name: c["failed"] for name, c in classes.items() if c["failed"]}
    assert failed == {}, proc.stdout[-3000:]
