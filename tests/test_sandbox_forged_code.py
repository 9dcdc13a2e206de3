"""Forged code objects are refused inside the sandbox (issue 13, item 4).

Bytecode that did not come from the compiler can corrupt the interpreter's memory and so
switch the audit hook off; every way of making such a code object must fail inside the
child, be reported as an error of the run, and leave the parent unharmed.  Each attack is
also run once with the audit hook off, to show that it is the guard (not the attack
being wrong) that refuses it.
"""

from __future__ import annotations

import asyncio

import pytest

from textgrad_core import sandbox
from textgrad_core.sandbox import SandboxResult, arun_code, call_function, run_code

BLOCKED = "blocked: constructing code objects is not allowed in the sandbox"

PRELUDE = "import marshal, types\ndef f():\n    return 1\ncode = f.__code__\n"

# name -> program that prints "forged" once it holds a code object of its own making
ATTACKS = {
    "marshal.loads": "c = marshal.loads(marshal.dumps(code))\nprint('forged')\n",
    "marshal.load": (
        "import io\nc = marshal.load(io.BytesIO(marshal.dumps(code)))\nprint('forged')\n"
    ),
    "marshal.loads of hand-made bytes": (
        "data = bytearray(marshal.dumps(code))\n"
        "data[-1] ^= 0\n"  # any byte string: the guard cannot tell, so it refuses all
        "c = marshal.loads(bytes(data))\nprint('forged')\n"
    ),
    "types.CodeType": (
        "c = types.CodeType(code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,\n"
        "    code.co_nlocals, code.co_stacksize, code.co_flags, b'\\x00' * 8, code.co_consts,\n"
        "    code.co_names, code.co_varnames, code.co_filename, code.co_name,\n"
        "    code.co_qualname, code.co_firstlineno, code.co_linetable,\n"
        "    code.co_exceptiontable)\n"
        "print('forged')\n"
    ),
    "code.replace": "c = code.replace(co_code=b'\\x00' * 8)\nprint('forged')\n",
    "code.replace of constants": "c = code.replace(co_consts=())\nprint('forged')\n",
    "FunctionType(forged code)": (
        "g = types.FunctionType(code.replace(co_code=b'\\x00' * 8), {})\nprint('forged')\ng()\n"
    ),
    "FunctionType(unmarshalled code)": (
        "g = types.FunctionType(marshal.loads(marshal.dumps(code)), {})\n"
        "print('forged', g())\n"
    ),
    "_imp.get_frozen_object(data)": (
        "import _imp\n"
        "_imp._override_frozen_modules_for_tests(0)\n"  # undo the runner's switch first
        "c = _imp.get_frozen_object('__hello__', marshal.dumps(code))\nprint('forged')\n"
    ),
    "sourceless .pyc import": (
        "import importlib.util, sys\n"
        "src = 'def g():\\n    return 2\\n'\n"
        "data = importlib.util.MAGIC_NUMBER + b'\\x00' * 12 + marshal.dumps(compile(src, 'evil', 'exec'))\n"
        "open('evil.pyc', 'wb').write(data)\n"
        "sys.path.insert(0, '.')\n"
        "import evil\nprint('forged', evil.g())\n"
    ),
}


def _run_all(codes: list[str], *, audit: bool) -> list[SandboxResult]:
    async def main():
        if audit:
            return await asyncio.gather(*(arun_code(c) for c in codes))
        return await asyncio.gather(*(sandbox._arun_without_audit(c) for c in codes))

    return asyncio.run(main())


@pytest.fixture(scope="module")
def guarded() -> dict[str, SandboxResult]:
    names = list(ATTACKS)
    return dict(zip(names, _run_all([PRELUDE + ATTACKS[n] for n in names], audit=True)))


@pytest.mark.parametrize("name", list(ATTACKS))
def test_forged_code_is_refused(guarded, name):
    res = guarded[name]
    assert "forged" not in res.stdout, (name, res.stdout)
    assert not res.ok and res.returncode == 1 and not res.timed_out
    if name == "sourceless .pyc import":
        # the import system unmarshals the file: the guard's refusal surfaces as an
        # ImportError chained to it, or as the refusal itself
        assert res.error and ("blocked" in res.error or "ImportError" in res.error
                              or "ModuleNotFoundError" in res.error), res.error
        assert BLOCKED in res.stderr or "evil" in res.stderr
    elif name == "_imp.get_frozen_object(data)":
        # the guard refuses the unmarshalling inside; _imp replaces that error by its own
        assert res.error == "ImportError: Frozen object named '__hello__' is invalid", res.error
    else:
        assert res.error == BLOCKED, (name, res.error)


def test_attacks_do_forge_code_without_the_guard():
    """The attacks are real: with the audit hook off, each one gets its code object (the
    kernel layers do not, and cannot, look inside the interpreter)."""
    names = [n for n in ATTACKS if n != "sourceless .pyc import"]
    results = _run_all([PRELUDE + ATTACKS[n] for n in names], audit=False)
    for name, res in zip(names, results):
        assert "forged" in res.stdout, (name, res.error, res.stderr[-300:])
        if name == "FunctionType(forged code)":
            # calling it shows why: the interpreter crashes (the parent is unharmed)
            assert not res.ok and res.returncode is not None and res.returncode < 0, res
            assert res.error.startswith("crashed with SIG"), res.error
        else:
            assert res.ok, (name, res.error)


def test_call_function_reports_forged_code_as_error():
    src = (
        "import marshal\n"
        "def f(x):\n"
        "    return marshal.loads(marshal.dumps(f.__code__)) and x\n"
    )
    value, res = call_function(src, "f", [3])
    assert value is None and not res.ok and res.error == BLOCKED


def test_guard_functions_cannot_be_copied():
    res = run_code(
        "import sys, types\n"
        "m = sys.modules['__main__']\n"
        "h = types.FunctionType(m.resolve.__code__, {}, 'r', (None,) * 7)\n"
        "print('copied')\n"
    )
    assert not res.ok and "copied" not in res.stdout
    assert res.error == "blocked: copying the sandbox guard's functions is not allowed"


def test_ordinary_code_still_works_after_the_guard():
    """Functions, closures, imports of stdlib and frozen modules, compile() and exec()
    all still work: only code objects that bypass the compiler are refused."""
    res = run_code(
        "import types, functools, runpy, zipimport, json, collections, fractions\n"
        "def outer(k):\n"
        "    def inner(x):\n"
        "        return x * k\n"
        "    return inner\n"
        "g = types.FunctionType(outer(3).__code__, {}, 'g', None, outer(3).__closure__)\n"
        "ns = {}\n"
        "exec(compile('def h(y):\\n    return y + 1\\n', 'gen', 'exec'), ns)\n"
        "print(g(2), ns['h'](1), functools.reduce(lambda a, b: a + b, [1, 2]),\n"
        "      json.dumps(collections.Counter('aab')), fractions.Fraction(1, 3))\n"
    )
    assert res.ok, (res.error, res.stderr[-500:])
    assert res.stdout == '6 2 3 {"a": 2, "b": 1} 1/3\n'


def test_runner_frames_are_hidden_from_tracebacks():
    res = run_code("raise ValueError('boom')\n")
    assert res.error == "ValueError: boom"
    assert "runner.py" not in res.stderr and "launcher.py" not in res.stderr
