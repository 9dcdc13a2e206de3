"""The warm pool's cleanup: the scan for a run's leftover processes is skipped only when the
zygote's children prove there are none, and a leftover that escaped the run's process group
(its own session, orphaned to the zygote) is still killed.

The escape needs a process the audit hook would refuse to create, so these runs switch the
hook off; they need the per-run uid and the warm pool, and skip where the machine has neither.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.proc_scan import live_pids_of_uid
from textgrad_core import sandbox
from textgrad_core.sandbox import SandboxLimits, pool
from textgrad_core.sandbox.limits import Job


def _run(code: str, *, audit: bool = True):
    job = Job(code=code, limits=SandboxLimits(timeout_s=10), audit=audit)
    return asyncio.run(sandbox._execute(job))


@pytest.fixture
def scans(monkeypatch) -> list[int]:
    """The uids the pool scanned /proc for (the scan itself still runs)."""
    seen: list[int] = []
    real = pool.kill_uid

    def counting(uid: int) -> None:
        seen.append(uid)
        real(uid)

    monkeypatch.setattr(pool, "kill_uid", counting)
    return seen


@pytest.fixture(scope="module")
def warm_layers() -> list[str]:
    outcome = _run("pass")
    assert outcome.result.ok, outcome.result
    z = pool.zygote(sandbox._kernel_layers_ok)
    if z is None or z.host_pid is None:
        pytest.skip("no warm pool on this machine (runs are cold)")
    if "uid" not in outcome.result.layers:
        pytest.skip("no per-run uid on this machine")
    return outcome.result.layers


def test_a_run_that_leaves_nothing_is_not_scanned_for(warm_layers, scans):
    for _ in range(3):
        outcome = _run("print(sum(range(10)))")
        assert outcome.result.ok and outcome.result.stdout == "45\n", outcome.result
    assert scans == []


def test_a_leftover_in_its_own_session_is_killed(warm_layers, scans):
    code = (
        "import os, time\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"  # out of the run's process group: killpg cannot reach it
        "    if os.fork() == 0:\n"
        "        os.write(w, b'%d' % os.getpid())\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "os.close(w)\n"
        "print(os.read(r, 32).decode())\n"
        "print(os.getuid())\n"
    )
    outcome = _run(code, audit=False)
    assert outcome.result.ok, outcome.result
    uid = int(outcome.result.stdout.split()[1])
    assert scans == [uid]  # the orphan was the zygote's child: the scan ran
    deadline = time.monotonic() + 5
    while live_pids_of_uid(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_pids_of_uid(uid) == []


def test_a_timed_out_run_is_scanned_for_and_nothing_survives(warm_layers, scans):
    job = Job(code="import os\nprint(os.getuid(), flush=True)\nwhile True:\n    pass\n",
              limits=SandboxLimits(timeout_s=1.0, cpu_s=30))
    outcome = asyncio.run(sandbox._execute(job))
    assert outcome.result.timed_out
    uid = int(outcome.result.stdout.split()[0])
    assert live_pids_of_uid(uid) == []
    assert len(scans) <= 1  # at most once per run, never twice


def test_strays_sees_a_child_the_pool_did_not_start(warm_layers):
    z = pool.zygote(sandbox._kernel_layers_ok)
    assert z.strays() is False  # idle: no run, no leftover
    with z.lock:
        saved = dict(z.live)
    try:
        async def check_during_run():
            # while a run is live its main process is no stray; forget it, and it is one
            task = asyncio.ensure_future(sandbox._execute(
                Job(code="import time\ntime.sleep(1.5)\n", limits=SandboxLimits(timeout_s=10))))
            deadline = time.monotonic() + 5
            while not z.live and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert z.live and z.strays() is False
            with z.lock:
                z.live.clear()
            assert z.strays() is True
            return await task

        outcome = asyncio.run(check_during_run())
        assert outcome.result.ok, outcome.result
    finally:
        with z.lock:
            z.live.update(saved)


def test_a_warm_child_holds_no_descriptor_and_no_bookkeeping_of_the_zygote():
    if pool.zygote(sandbox._kernel_layers_ok) is None:
        pytest.skip("no warm pool on this machine (runs are cold)")
    probe = (
        "import os, re, sys, time\n"
        "time.sleep(0.3)\n"  # the sibling runs are live meanwhile
        "fds = []\n"
        "for name in sorted(os.listdir('/proc/self/fd'), key=int):\n"
        "    try:\n"
        "        fds.append(os.readlink('/proc/self/fd/' + name))\n"
        "    except OSError:\n"
        "        pass\n"
        "print([t for t in fds if not t.startswith(('pipe:', '/dev/null', '/proc/'))\n"
        "       and '(deleted)' not in t])\n"
        "own, f, seen = os.getcwd(), sys._getframe(), set()\n"
        "def look(x, depth=0):\n"  # every run directory named in the frames' locals
        "    if type(x) is str and re.fullmatch('/.*/run-[0-9a-f]{16}', x) and x != own:\n"
        "        seen.add(x)\n"
        "    elif type(x) in (list, tuple) and depth < 3:\n"
        "        for y in x: look(y, depth + 1)\n"
        "    elif type(x) is dict and depth < 3:\n"
        "        for k, y in list(x.items()): look(k, depth + 1); look(y, depth + 1)\n"
        "while f is not None:\n"
        "    look(list(f.f_locals.values()))\n"
        "    f = f.f_back\n"
        "print(sorted(seen))\n"
    )

    async def three():
        return await asyncio.gather(*(sandbox.arun_code(probe) for _ in range(3)))

    for res in asyncio.run(three()):
        assert res.ok, res
        leaked_fds, bookkeeping = res.stdout.splitlines()
        assert leaked_fds == "[]"  # no epoll instance, socket or pipe end of the zygote's
        assert bookkeeping == "[]"  # no table of the sibling runs' directories
