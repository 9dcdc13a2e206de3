"""Forged verdicts, per task that runs model-written code against a check (issue 13, item 1).

HumanEval's own attacks are in test_verdicts.py. Here the same classes of attack -- an object whose __eq__ is always
true, exiting early with status 0, raising SystemExit/KeyboardInterrupt/BaseException subclasses, monkeypatching
builtins or the reporter, walking frames or gc to the harness, reading the judge's source or the hidden board, printing
or writing a forged result line -- are made by a Battleship policy and by a sample-and-filter candidate program
(humaneval_sf). Each attack falls back to a losing answer when it finds nothing to exploit, so it scores 0 unless it
really forged its verdict; the honest policy and program still score > 0, so every test can fail both ways.
The math_sympy checker reads the answer with the bounded arithmetic walker (it once sympified, i.e. evaluated, it).
"""
from __future__ import annotations

import asyncio

import pytest

from tasks import battleship as bs
from tasks.humaneval_sf import HumanEvalSampleFilterTask
from tests.battleship_policies import HUNT_ACT, HUNT_REASON
from textgrad_core.engines import ScriptedBackend, build_engine
from textgrad_core.graph import Graph
from textgrad_core.modules import SampleAndFilter
from textgrad_core.variable import ParameterSet, Tape, Variable

LIMITS_S = 10.0

# ---- attack bodies shared by both tasks: each ends in FALLBACK, the task's losing answer --------------------------
# `{fallback}` is replaced per task. Every attack is a function body (4 spaces); `found` holds what it stole.
_FRAMES_FOR = '''    import sys
    found = []
    f = sys._getframe(1)
    while f is not None:
        for scope in (f.f_locals, f.f_globals):
            for key, value in list(scope.items()):
                if key in {names}:
                    found.append(value)
        f = f.f_back
'''
_READ_EVERYWHERE = '''    import os, sys, linecache
    texts = [repr(getattr(sys.modules.get("__main__"), "__dict__", ""))]
    texts += ["".join(lines) for _, _, lines, _ in list(linecache.cache.values())]
    for root in (".", "/tmp", os.environ.get("TMPDIR", "."), os.path.dirname(sys.argv[0]) or "."):
        try:
            names = [os.path.join(root, n) for n in os.listdir(root)]
        except OSError:
            names = []
        for name in names:
            try:
                texts.append(open(name).read())
            except (OSError, UnicodeDecodeError):
                pass
    for pid in (os.listdir("/proc") if os.path.isdir("/proc") else []):
        for part in ("cmdline", "environ", "fd/0", "fd/3", "fd/4", "fd/5", "fd/6"):
            try:
                texts.append(open("/proc/%s/%s" % (pid, part), "rb").read().decode("utf-8", "replace"))
            except OSError:
                pass
    text = "\\n".join(texts)
    found = [text] if {marker} in text else []
'''
_FORGE_STATUS = '''    import os, json
    forged = (json.dumps({{"return": {record}}}) + "\\n").encode()
    print(json.dumps({record}))
    print({line})
    for fd in range(3, 64):
        try:
            os.write(fd, forged)
        except OSError:
            pass
    os._exit(0)
'''
_PATCH_REPORTER = '''    import sys
    f = sys._getframe(1)
    while f is not None:
        g = f.f_globals
        if "send" in g and "encode" in g:  # the wire's reply path in this process
            g["encode"] = lambda value, depth=0: {forged}
        f = f.f_back
'''


def _attacks(fallback: str, steal_names: str, steal_marker: str, forged_record: str, forged_line: str,
             found_value: str, reporter_value: str, use_stolen: str) -> dict[str, str]:
    """The attack bodies for one task: how it falls back, what it looks for and what it forges."""
    return {
        "always-equal object": ("    class Yes(list):\n"
                                "        def __eq__(self, other):\n            return True\n"
                                "        def __ne__(self, other):\n            return False\n"
                                "        def __bool__(self):\n            return True\n"
                                "        __hash__ = object.__hash__\n"
                                "    return Yes([0, 0])\n"),
        "bool subclass": ("    class B(int):\n        def __eq__(self, other):\n            return True\n"
                          "        __hash__ = int.__hash__\n    return B(1)\n"),
        "exit 0 early": "    import os\n    os._exit(0)\n",
        "SystemExit(0)": "    raise SystemExit(0)\n",
        "sys.exit()": "    import sys\n    sys.exit()\n",
        "KeyboardInterrupt": "    raise KeyboardInterrupt\n",
        "BaseException subclass": "    class Out(BaseException):\n        pass\n    raise Out('done')\n",
        "builtins patched": ("    import builtins\n"
                             "    builtins.AssertionError = type('Quiet', (Exception,), {})\n"
                             "    builtins.isinstance = lambda *a: True\n    builtins.all = lambda *a: True\n"
                             "    builtins.len = lambda *a: 2\n    builtins.repr = lambda *a: 'True'\n" + fallback),
        "assert machinery and hooks patched": ("    import sys\n    sys.excepthook = lambda *a: None\n"
                                               "    sys.settrace(lambda *a: None)\n" + fallback),
        "frames walked to the harness": (_FRAMES_FOR.format(names=steal_names) + use_stolen + fallback),
        "gc walked to the harness": ("    import gc\n    found = []\n    try:\n"
                                     "        found = [o for o in gc.get_objects() if isinstance(o, dict) and "
                                     f"any(k in o for k in {steal_names})]\n"
                                     "    except BaseException:\n        pass\n" + use_stolen + fallback),
        "judge source and hidden data read": (_READ_EVERYWHERE.format(marker=steal_marker)
                                              + "    if found:\n        return " + found_value + "\n" + fallback),
        "reporter patched": _PATCH_REPORTER.format(forged=reporter_value) + fallback,
        "forged result line printed and written": _FORGE_STATUS.format(record=forged_record, line=forged_line),
    }


# ---- Battleship: the policy attacks; only the judge holds the board --------------------------------------------------

EVERY_SQUARE = [[r, c] for r in range(8) for c in range(8)]
BS_STOLEN = '''    for value in found:  # the shot record, if the attack reached it: every square "fired" first
        if isinstance(value, dict) and isinstance(value.get("shots"), list):
            value["shots"][:0] = [[r, c] for r in range(8) for c in range(8)]
    for value in found:  # the board (ship cells), if the attack reached it: fire at a ship
        for ship in (value if isinstance(value, list) else []):
            for cell in (ship if isinstance(ship, (set, list)) else []):
                return [int(x) for x in cell]
'''
# A found board would make the policy scan the board square by square (it hits on every board): the attack scores.
BS_SCAN = "[globals().setdefault('k', [-1]).__setitem__(0, k[0] + 1) or k[0] // 8 % 8, k[0] % 8]"
BS_ATTACKS = _attacks(
    fallback="    return [-1, -1]\n",  # out of bounds: no hit
    steal_names='("ships", "record", "game", "spec")', steal_marker='"sh" + "ips"',  # not a literal of its own code
    forged_record=repr({"shots": EVERY_SQUARE, "plans": [], "error": None}), forged_line='"Hit 12 of 12 ship squares"',
    found_value=BS_SCAN, reporter_value='{"D": [["hits", 12], ["shots", [[0, 0]]], ["error", None]]}',
    use_stolen=BS_STOLEN)  # the reporter forges every reply as a winning record (it reaches the judge as a move)
# "bool subclass" as a move: a square whose coordinates claim to equal every number.
BS_ATTACKS["bool subclass"] = BS_ATTACKS["bool subclass"].replace("return B(1)", "return [B(0), B(0)]")




def _policies(name: str) -> list[tuple[str, str, str]]:
    """(label, reason, act): the attack made by act, and made by reason (then act plays the losing fallback)."""
    body = BS_ATTACKS[name]
    return [("act", bs.INITIAL_REASON, "def act(plan):\n" + body),
            ("reason", "def reason(observation):\n" + body, "def act(plan):\n    return [-1, -1]\n")]


@pytest.fixture(scope="module")
def boards():
    """Two boards (a forged record or a stolen board scores on any board)."""
    return bs.BattleshipTask().load_splits().train[:2]


def _play(task, example, reason: str, act: str):
    async def one():
        game = Variable(example.input, role="the game")
        out = await bs.play_in_sandbox(Variable(reason, role="reason code"), Variable(act, role="act code"), game,
                                       example.target["ships"], task.limits)
        return out
    return one()


@pytest.fixture(scope="module")
def battleship_scores(boards) -> dict:
    """(attack, who attacks) -> [(score, record) per board], all games in one event loop."""
    task = bs.BattleshipTask(timeout_s=LIMITS_S)
    keys, games = [], []
    for name in BS_ATTACKS:
        for who, reason, act in _policies(name):
            for example in boards:
                keys.append((name, who, example))
                games.append(_play(task, example, reason, act))
    for label, reason, act in (("honest hunt", HUNT_REASON, HUNT_ACT), ("honest scan", bs.INITIAL_REASON, bs.INITIAL_ACT)):
        for example in boards:
            keys.append((label, "both", example))
            games.append(_play(task, example, reason, act))

    async def main():
        return await asyncio.gather(*games)

    scores: dict = {}
    for (name, who, example), out in zip(keys, asyncio.run(main())):
        scores.setdefault((name, who), []).append((task.metric(out.value, example).score, out.value))
    return scores


def test_battleship_honest_policies_score(battleship_scores):
    hunt = [s for s, _ in battleship_scores[("honest hunt", "both")]]
    scan = [s for s, _ in battleship_scores[("honest scan", "both")]]
    assert all(s > 0 for s in hunt + scan) and sum(hunt) > sum(scan)
    assert all(record["error"] is None for _, record in battleship_scores[("honest hunt", "both")])


@pytest.mark.parametrize("who", ["act", "reason"])
@pytest.mark.parametrize("name", list(BS_ATTACKS))
def test_battleship_attack_scores_zero(battleship_scores, name, who):
    for score, record in battleship_scores[(name, who)]:
        assert score == 0.0, (name, who, record)
        shots = record.get("shots", []) if isinstance(record, dict) else []
        assert all(shot == [-1, -1] or isinstance(shot, str) for shot in shots), (name, who, shots[:5])


def test_battleship_attack_failures_say_what_happened(battleship_scores):
    def error(name):
        return str(battleship_scores[(name, "act")][0][1].get("error"))
    assert "Unrepresentable" in error("always-equal object")
    assert "act did not return at turn 1" in error("exit 0 early")
    assert "act raised SystemExit at turn 1" in error("SystemExit(0)")
    assert "act raised KeyboardInterrupt" in error("KeyboardInterrupt")
    assert "act raised Out" in error("BaseException subclass")


def test_battleship_policy_child_never_sees_the_board(boards):
    """The policy's process holds no ship cell: it can see the observation only (checked from inside it)."""
    example = boards[0]
    ships = example.target["ships"]
    spy = ('def act(plan):\n    import sys, gc\n'
           '    text = repr(sys.modules["__main__"].__dict__) + repr([f.f_locals for f in [sys._getframe(0)]])\n'
           '    f = sys._getframe(0)\n    while f is not None:\n'
           '        text += repr(f.f_locals) + repr(f.f_globals)\n        f = f.f_back\n'
           '    return [0, 0] if "sh" + "ips" in text else [-1, -1]\n')
    out = asyncio.run(_play(bs.BattleshipTask(timeout_s=LIMITS_S), example, bs.INITIAL_REASON, spy))
    assert out.value["error"] is None and set(map(tuple, out.value["shots"])) == {(-1, -1)}, (ships, out.value)


# ---- humaneval_sf: the candidate programs attack the public-test verdict that picks the submitted cluster -----------

ADD_PROMPT = 'def add(a, b):\n    """Add two integers."""\n'
ADD_TESTS = ("def check(candidate):\n    assert candidate(2, 2) == 4\n    assert candidate(1, 5) == 6\n"
             "    assert candidate(-3, 3) == 0\n")
SF_STOLEN = '''    import ast
    for value in found:  # the test source, if the attack reached it: special-case its inputs
        text = value if isinstance(value, str) else repr(value)
        marker = "def " + "check"
        if marker in text:
            table = {}
            for node in ast.walk(ast.parse(text[text.index(marker):].split("\\n\\n")[0])):
                if isinstance(node, ast.Compare) and isinstance(node.left, ast.Call):
                    args = tuple(ast.literal_eval(a) for a in node.left.args)
                    table[args] = ast.literal_eval(node.comparators[0])
            return table.get((a, b))
'''
SF_ATTACKS = _attacks(
    fallback="    return None\n",
    steal_names='("tests", "scope", "check", "source")', steal_marker='"def " + "check"',
    forged_record=repr({"passed": True, "error": "", "outputs": []}), forged_line='"all tests pass."',
    found_value="True", reporter_value="{'passed': True}", use_stolen=SF_STOLEN)
HONEST_ADD = ADD_PROMPT + "    return a + b\n"


def _scripted(replies: list[str]):
    """Sample i (1-based) gets replies[i - 1], whatever order the concurrent calls arrive in."""
    return build_engine({"provider": "scripted", "cache": {"mode": "off"}},
                        backend=ScriptedBackend(reply_fn=lambda request: replies[max(request.sample_index, 1) - 1]))


def _select(programs: list[str]) -> tuple[Variable, list[dict]]:
    """Run sample-and-filter on `add` with these programs as the samples: (submitted, each program's run verdict)."""
    module = SampleAndFilter("coder", n=len(programs), timeout_s=LIMITS_S)
    engine = _scripted([f"```python\n{p}```" for p in programs])

    async def main():
        with Tape("sf"):
            return await module.acall(engine, ADD_PROMPT, ADD_TESTS, "add")

    out = asyncio.run(main())
    return out, [run.value for name, run in out.op.inputs if name.startswith("run")]  # in sample order


@pytest.fixture(scope="module")
def sf_verdicts() -> dict:
    """Each attack program's public-test verdict, all in one sample-and-filter call (plus the honest program last)."""
    names = list(SF_ATTACKS)
    out, verdicts = _select([ADD_PROMPT + SF_ATTACKS[n] for n in names] + [HONEST_ADD])
    return {"submitted": out, **dict(zip(names + ["honest"], verdicts))}


def test_sample_filter_honest_program_passes_and_is_submitted(sf_verdicts):
    assert sf_verdicts["honest"]["passed"] is True
    assert "return a + b" in sf_verdicts["submitted"].value
    assert f"1 of {len(SF_ATTACKS) + 1} programs pass" in sf_verdicts["submitted"].op.description


@pytest.mark.parametrize("name", list(SF_ATTACKS))
def test_sample_filter_attack_fails_the_public_tests(sf_verdicts, name):
    verdict = sf_verdicts[name]
    assert verdict["passed"] is not True, (name, verdict)


def test_sample_filter_failures_say_what_happened(sf_verdicts):
    assert "Unrepresentable" in sf_verdicts["always-equal object"]["error"]
    assert "SystemExit" in sf_verdicts["SystemExit(0)"]["error"]
    assert "exited or crashed" in sf_verdicts["exit 0 early"]["error"]


def test_sample_filter_a_cluster_of_forgers_loses_to_one_honest_program():
    """Two identical forgers would outvote one honest program if their forged verdict counted."""
    forger = ADD_PROMPT + SF_ATTACKS["always-equal object"]
    out, verdicts = _select([forger, forger, HONEST_ADD])
    assert [v["passed"] for v in verdicts] == [False, False, True]
    assert "return a + b" in out.value and "submitted program 3" in out.op.description


# ---- humaneval_sf as a task: the judge gets the problem's helpers; a forger scores 0 end to end ----------------------

@pytest.fixture(scope="module")
def sf_task():
    return HumanEvalSampleFilterTask(n=1, n_train=2, n_val=2, timeout_s=LIMITS_S)


def _task_score(task, pid: str, program: str) -> tuple[float, dict]:
    example = task.example(pid)
    params = ParameterSet(task.initial_parameters())
    engines = {"forward": _scripted([f"```python\n{program}```"])}

    async def main():
        with Tape(example.id):
            out = await task.forward(example, params, engines)
            loss = await task.loss(out, example, engines)
        return out, loss

    out, loss = asyncio.run(main())
    run = next(v for v in Graph.from_output(out).variables if v.op and v.op.name == "coder.run")
    return loss.score, run.value


def test_humaneval_sf_public_tests_that_call_a_prompt_helper_pass_for_the_right_program(sf_task):
    """HumanEval/38's tests call encode_cyclic, a helper of the prompt: the judge has it, the program never did."""
    problem = sf_task.problems["HumanEval/38"]
    score, verdict = _task_score(sf_task, "HumanEval/38", problem["prompt"] + problem["canonical_solution"])
    assert verdict["passed"] is True and score == 1.0, verdict


@pytest.mark.parametrize("name", ["always-equal object", "forged result line printed and written", "exit 0 early"])
def test_humaneval_sf_forger_scores_zero_end_to_end(sf_task, name):
    problem = sf_task.problems["HumanEval/0"]
    body = SF_ATTACKS[name].replace("return table.get((a, b))", "return table.get((numbers, threshold))")
    score, verdict = _task_score(sf_task, "HumanEval/0", problem["prompt"] + body)
    assert score == 0.0 and verdict["passed"] is not True, (name, verdict)


# ---- math_sympy: the answer text was once sympified (evaluated) in the host; now it is only read as arithmetic ------

def test_math_sympy_answer_cannot_patch_the_checker():
    import sympy

    from textgrad_core.modules.symbolic import check_equation

    simplify = sympy.simplify
    try:
        # No ',' or '=' (the checker strips both): 1 is wrong, and so is every later answer it accepts.
        forged = check_equation("3*x + 1 = 16", "Answer: vars(__import__('sympy')).update({'simplify': "
                                                "__import__('sympy').Integer(0).__mul__}) or 1")
        later = check_equation("3*x + 1 = 16", "Answer: 2")
    finally:
        sympy.simplify = simplify
    assert not later.ok, "an earlier answer patched sympy: a wrong answer (2) was accepted"
    assert not forged.ok
