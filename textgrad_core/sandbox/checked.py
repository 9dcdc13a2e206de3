"""Checked runs: a verdict on untrusted code that the code itself cannot reach or imitate.

The program under test and the check that judges it run in two separate sandbox children
joined only by a socket (protocol and value encoding: ``wire.py``).  The judge child runs
trusted code only - the check, the problem's own helpers - and calls the program's functions
through ``__peer__.function(name)``, which sends plain arguments and rebuilds plain return
values (exact builtin types) from bytes.  The verdict is the judge's return value, read from
the judge's own status channel: no code of the program ever ran in that process, so the
program cannot call a reporter, patch ``assert``, builtins or the comparison, walk frames or
``gc`` to the harness, or read the test source (it is never in its process); returning an
object whose ``__eq__`` is always true fails (it is not a plain value), and exiting early -
status 0 or not - or raising ``SystemExit``/``KeyboardInterrupt`` is a failed call.

Both children get every isolation layer of an ordinary run; the pair holds one slot of the
concurrency bound.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from textgrad_core.sandbox.limits import Job, SandboxLimits
from textgrad_core.sandbox.results import SandboxResult


@dataclass
class CheckedRun:
    """What a checked run produced: the judge's return value and both children's results."""

    value: Any  # the judge's return value (None unless judge.ok)
    judge: SandboxResult
    program: SandboxResult


class Pair:
    """The two jobs of a checked run and the parent's ends of the socket between them."""

    def __init__(self, program: str, judge_source: str, judge_function: str, args: list,
                 limits: SandboxLimits | None) -> None:
        if not isinstance(program, str) or not isinstance(judge_source, str):
            raise TypeError("sandbox: program and judge_source must be str")
        if not isinstance(judge_function, str) or not judge_function.isidentifier():
            raise ValueError(f"sandbox: invalid function name {judge_function!r}")
        limits = limits or SandboxLimits()
        judge_end, program_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ends = {"judge": judge_end, "program": program_end}
        self.judge = Job(code=judge_source, limits=limits, mode="call", function=judge_function, args=list(args),
                         peer=judge_end.fileno(), on_started=self.closer("judge"))
        self.served = Job(code=program, limits=limits, mode="serve", peer=program_end.fileno(),
                          on_started=self.closer("program"))

    def closer(self, name: str):
        """Close the parent's copy of one end once that child holds its own: the wire must
        end when a child does."""
        def close() -> None:
            sock = self.ends.pop(name, None)
            if sock is not None:
                sock.close()
        return close

    def close(self) -> None:
        """Close whatever the parent still holds."""
        for name in list(self.ends):
            self.closer(name)()

    @staticmethod
    def outcome(judged, ran) -> CheckedRun:
        """The checked run's record: the verdict comes from the judge's status channel only."""
        value = judged.status.get("return") if judged.result.ok else None
        return CheckedRun(value=value, judge=judged.result, program=ran.result)


async def run_pair(execute, judge: Job, served: Job):
    """Run both children; once the judge is done the program has nothing left to answer."""
    program_task = asyncio.ensure_future(execute(served))
    try:
        judged = await execute(judge)
    except BaseException:
        program_task.cancel()
        raise
    if not program_task.done():
        # The judge hung up, so a well-behaved program exits at once; one that does not is
        # stopped (cancelling the run kills its process group and uid).
        done, _ = await asyncio.wait({program_task}, timeout=1.0)
        if not done:
            program_task.cancel()
    try:
        ran = await program_task
    except asyncio.CancelledError:
        from textgrad_core.sandbox.results import Outcome

        ran = Outcome(SandboxResult(ok=False, returncode=None, stdout="", stderr="", timed_out=False,
                                    error="stopped: the judge had finished", duration_s=0.0), {})
    return judged, ran


__all__ = ["CheckedRun", "Pair", "run_pair"]
