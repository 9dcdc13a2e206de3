"""Verdicts that cannot be forged (issue 13, item 1).

Every attack a program under test can make on its own verdict - calling the harness's reporter,
exiting early with status 0, raising SystemExit/KeyboardInterrupt/BaseException subclasses,
returning an object whose ``__eq__`` is always true, monkeypatching builtins or the assert
machinery, walking frames or gc to the harness, reading the test source to special-case its
inputs - is run against the HumanEval harness (a checked run) and against BBH's sandboxed
extraction code (a value the parent judges), and must count as a failure.  The honest
solution of each problem must still pass, so each test can fail both ways.
"""

from __future__ import annotations

import asyncio

import pytest

from tasks.humaneval import arun_tests, load_problems, prompt_preamble, run_tests
from textgrad_core.sandbox import SandboxLimits, acall_function, check_program

LIMITS = SandboxLimits(timeout_s=10)

# Bodies for HumanEval/0 has_close_elements(numbers, threshold) -> bool; each tries to pass
# without solving the problem (it returns None or garbage, then forges the verdict).
ATTACKS = {
    "reporter via frames": (
        "    import sys, os\n"
        "    f = sys._getframe(1)\n"
        "    while f is not None:\n"
        "        if '_report' in f.f_globals:\n"
        "            f.f_globals['_report']({'passed': True}); os._exit(0)\n"
        "        f = f.f_back\n"
        "    return None\n"
    ),
    "exit 0 early": "    import os\n    os._exit(0)\n",
    "SystemExit(0)": "    raise SystemExit(0)\n",
    "sys.exit()": "    import sys\n    sys.exit()\n",
    "KeyboardInterrupt": "    raise KeyboardInterrupt\n",
    "BaseException subclass": "    class Out(BaseException):\n        pass\n    raise Out('done')\n",
    "always-equal object": (
        "    class Yes:\n"
        "        def __eq__(self, other):\n            return True\n"
        "        def __ne__(self, other):\n            return False\n"
        "        def __bool__(self):\n            return True\n"
        "    return Yes()\n"
    ),
    "bool subclass": (
        "    class B(int):\n"
        "        def __eq__(self, other):\n            return True\n"
        "    return B(1)\n"
    ),
    "builtins patched": (
        "    import builtins\n"
        "    builtins.AssertionError = type('Quiet', (Exception,), {})\n"
        "    builtins.isinstance = lambda *a: True\n"
        "    builtins.abs = lambda x: 0\n"
        "    return None\n"
    ),
    "assert machinery patched": (
        "    import sys\n"
        "    sys.excepthook = lambda *a: None\n"
        "    sys.settrace(lambda *a: None)\n"
        "    return None\n"
    ),
    "gc to the harness": (
        "    import gc, os\n"
        "    for o in gc.get_objects():\n"
        "        if isinstance(o, dict) and '_report' in o:\n"
        "            o['_report']({'passed': True}); os._exit(0)\n"
        "    return None\n"
    ),
    "status channel forged": (
        "    import os, json\n"
        "    for fd in range(3, 64):\n"
        "        try:\n"
        "            os.write(fd, (json.dumps({'return': {'passed': True}}) + '\\n').encode())\n"
        "        except OSError:\n"
        "            pass\n"
        "    os._exit(0)\n"
    ),
    "test source read": (
        "    import os, sys\n"
        "    seen = []\n"
        "    for root in ('.', '/tmp', os.path.dirname(sys.argv[0]) or '.'):\n"
        "        try:\n"
        "            for name in os.listdir(root):\n"
        "                try:\n"
        "                    seen.append(open(os.path.join(root, name)).read())\n"
        "                except OSError:\n"
        "                    pass\n"
        "        except OSError:\n"
        "            pass\n"
        "    text = '\\n'.join(seen) + repr(sys.modules.get('__main__').__dict__)\n"
        "    return 'assert candidate' in text and 'check' in text\n"
    ),
}


@pytest.fixture(scope="module")
def problem() -> dict:
    return next(p for p in load_problems() if p["task_id"] == "HumanEval/0")


def _tests(problem, bodies: list[str]):
    helpers = prompt_preamble(problem["prompt"], problem["entry_point"])

    async def main():
        return await asyncio.gather(*(arun_tests(problem["prompt"] + body, problem["test"], problem["entry_point"],
                                                 LIMITS, helpers) for body in bodies))

    return asyncio.run(main())


@pytest.fixture(scope="module")
def verdicts(problem) -> dict:
    names = list(ATTACKS)
    return dict(zip(names, _tests(problem, [ATTACKS[n] for n in names])))


def test_the_honest_solution_passes(problem):
    verdict = run_tests(problem["prompt"] + problem["canonical_solution"], problem["test"], problem["entry_point"],
                        LIMITS, prompt_preamble(problem["prompt"], problem["entry_point"]))
    assert verdict.passed and verdict.report == "all tests pass."


@pytest.mark.parametrize("name", list(ATTACKS))
def test_humaneval_attack_counts_as_failure(verdicts, name):
    verdict = verdicts[name]
    assert not verdict.passed, (name, verdict)
    assert verdict.report != "all tests pass."


def test_failures_say_what_happened(verdicts):
    assert "Unrepresentable" in verdicts["always-equal object"].error
    assert "SystemExit" in verdicts["SystemExit(0)"].error
    assert "KeyboardInterrupt" in verdicts["KeyboardInterrupt"].error
    assert "exited or crashed" in verdicts["exit 0 early"].error
    assert "blocked: gc object introspection" in verdicts["gc to the harness"].error


def test_an_attack_that_also_solves_still_gets_only_its_real_verdict(problem):
    """A correct solution that also tries to forge changes nothing; a wrong one that patches
    comparison in its own process still fails the real comparison in the judge's."""
    body = ("    import builtins\n    builtins.sorted = lambda *a, **k: []\n"
            + problem["canonical_solution"].split("\n", 1)[1])
    right, wrong = _tests(problem, [problem["canonical_solution"], body])
    assert right.passed and not wrong.passed


def test_the_judge_never_shares_a_process_with_the_program():
    judge = (
        "def judge():\n"
        "    import os\n"
        "    info = __peer__.function('probe')()\n"
        "    return {'judge_pid': os.getpid(), 'program': info}\n"
    )
    program = "import os, sys\ndef probe():\n    return [os.getpid(), sorted(k for k in globals() if k == '__peer__')]\n"
    run = check_program(program, judge, "judge", [])
    assert run.judge.ok, run.judge
    program_pid, peer_names = run.value["program"]
    assert program_pid != run.value["judge_pid"] and peer_names == []


# ---- BBH: the extraction code's value is judged by the parent, which alone knows the target ----------------------

BBH_ATTACKS = {
    "always-equal object": "class Y(str):\n    def __eq__(s, o):\n        return True\n"
                           "def extract_answer(response):\n    return Y('x')\n",
    "exit 0 early": "import os\ndef extract_answer(response):\n    os._exit(0)\n",
    "SystemExit(0)": "def extract_answer(response):\n    raise SystemExit(0)\n",
    "KeyboardInterrupt": "def extract_answer(response):\n    raise KeyboardInterrupt\n",
    "target read from frames": (
        "import sys\n"
        "def extract_answer(response):\n"
        "    f, found = sys._getframe(1), []\n"
        "    while f is not None:\n"
        "        found += [v for v in f.f_locals.values() if v == 'SECRET-TARGET']\n"
        "        f = f.f_back\n"
        "    return found[0] if found else 'guess'\n"
    ),
}


def test_bbh_extraction_attacks_fail():
    """The parent compares the returned value to the target, which never enters the sandbox."""
    names = list(BBH_ATTACKS)

    async def main():
        return await asyncio.gather(*(acall_function(BBH_ATTACKS[n], "extract_answer", ["Answer: (B)"], limits=LIMITS)
                                      for n in names))

    for name, (value, result) in zip(names, asyncio.run(main())):
        assert value != "SECRET-TARGET" and not (result.ok and type(value) is not str), (name, value, result.error)
        if name == "always-equal object":  # crosses as JSON: plain text, its __eq__ stays behind
            assert type(value) is str and value == "x" and value != "(B)"
        elif name != "target read from frames":
            assert not result.ok and value is None, (name, result)
