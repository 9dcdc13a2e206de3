"""Launching a sandbox child and making sure nothing of it survives: spawn the launcher
with its config/status descriptors, feed stdin, read capped output, enforce the wall-clock
timeout, kill the process group (and every process of the run's uid), clean up."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import weakref

from textgrad_core.sandbox.layers import (
    LAUNCHER,
    Plan,
    alloc_uid,
    child_config,
    child_env,
    free_uid,
    uid_range_usable,
)
from textgrad_core.sandbox.limits import MAX_CONCURRENT_SANDBOXES, Job
from textgrad_core.sandbox.results import (
    Outcome,
    SandboxResult,
    build_result,
    decode_output,
    read_status,
)

semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def kill_uid(uid: int) -> None:
    """SIGKILL every process whose real or effective uid is ``uid`` (a per-run uid)."""
    for _ in range(10):
        found = False
        try:
            pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
        except OSError:
            return
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status", "rb") as f:
                    data = f.read()
                if b"\nState:\tZ" in data:  # already dead, waiting to be reaped
                    continue
                i = data.index(b"\nUid:")
                ids = data[i + 5:data.index(b"\n", i + 1)].split()
                if uid in (int(ids[0]), int(ids[1])):
                    os.kill(pid, signal.SIGKILL)
                    found = True
            except (OSError, ValueError, IndexError):
                continue
        if not found:
            return
        time.sleep(0.01)


def killpg(pid: int) -> None:
    """SIGKILL the process group ``pid`` (gone already: nothing to do)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, int]:
    """Read ``stream`` to its end, keeping at most ``cap`` bytes; returns (kept, total)."""
    buf = bytearray()
    total = 0
    if stream is None:
        return b"", 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        total += len(chunk)
        if len(buf) < cap:
            buf += chunk[: cap - len(buf)]
    return bytes(buf), total


async def feed_stdin(writer: asyncio.StreamWriter | None, data: str) -> None:
    """Write ``data`` to the child's stdin and close it (a child that exits early is fine)."""
    if writer is None:
        return
    try:
        if data:
            writer.write(data.encode("utf-8"))
            await writer.drain()
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass

class ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Stream protocol that also reports the moment the main process exits.

    ``Process.wait()`` only completes once the pipes are closed as well, which leftover
    children of the run could delay; the exit itself is what starts the cleanup."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def spawn(argv: list[str], **kwargs) -> tuple[asyncio.subprocess.Process, ExitProtocol]:
    """Start ``argv`` with a protocol that reports the main process's exit."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: ExitProtocol(limit=2**16, loop=loop), *argv, **kwargs
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol


def loop_semaphore() -> asyncio.Semaphore:
    """The semaphore bounding concurrent children on the running event loop."""
    loop = asyncio.get_running_loop()
    sem = semaphores.get(loop)
    if sem is None:
        sem = semaphores[loop] = asyncio.Semaphore(MAX_CONCURRENT_SANDBOXES)
    return sem


async def execute_once(job: Job, *, kernel: bool) -> Outcome:
    """Run ``job`` in one child (with or without the kernel layers) and clean up after it,
    also when the caller is cancelled."""
    plan = Plan.get()
    limits = job.limits
    uid = alloc_uid() if kernel and uid_range_usable() else None
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="tg_sandbox_"))
    cfg_file = tempfile.TemporaryFile()
    st_file = tempfile.TemporaryFile()
    proc: asyncio.subprocess.Process | None = None
    tasks: dict[str, asyncio.Future] = {}
    uid_killed = False  # one full scan per run suffices once the run's main process is gone
    try:
        if uid is not None:
            try:
                os.chown(workdir, uid, uid)
            except OSError:
                free_uid(uid)
                uid = None
        cfg = child_config(job, workdir=workdir, uid=uid, kernel=kernel)
        cfg_file.write(json.dumps(cfg).encode("ascii"))
        cfg_file.flush()
        cfg_fd, st_fd = cfg_file.fileno(), st_file.fileno()
        # -I: no environment variables, no user site, no script dir on sys.path
        argv = [plan.exe, "-I", "-S", "-B", LAUNCHER, str(cfg_fd), str(st_fd)]
        cap = limits.max_output_chars * 4 + 4
        start = time.monotonic()
        try:
            proc, protocol = await spawn(
                argv,
                stdin=asyncio.subprocess.PIPE if job.stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                env=child_env(workdir),
                pass_fds=(cfg_fd, st_fd) + ((job.peer,) if job.peer is not None else ()),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            result = SandboxResult(
                ok=False, returncode=None, stdout="", stderr="", timed_out=False,
                error=f"sandbox failed to start: {e}", duration_s=0.0,
            )
            return Outcome(result, {})
        if job.on_started is not None:
            job.on_started()
        tasks["out"] = asyncio.ensure_future(read_capped(proc.stdout, cap))
        tasks["err"] = asyncio.ensure_future(read_capped(proc.stderr, cap))
        tasks["wait"] = asyncio.ensure_future(proc.wait())
        tasks["stdin"] = asyncio.ensure_future(feed_stdin(proc.stdin, job.stdin))
        await asyncio.wait({protocol.exited, tasks["wait"]}, timeout=limits.timeout_s,
                           return_when=asyncio.FIRST_COMPLETED)
        timed_out = not (protocol.exited.done() or tasks["wait"].done())
        duration = time.monotonic() - start
        # The main process is gone (or timed out): nothing of this run may outlive it.
        # A process group id stays allocated while any member exists, so killpg() after
        # the leader was reaped can only reach this run's leftovers.
        killpg(proc.pid)
        if uid is not None:
            kill_uid(uid)  # also those that left the process group (setsid)
            uid_killed = timed_out is False and proc.returncode is not None
        _, still = await asyncio.wait({tasks["out"], tasks["err"], tasks["wait"]}, timeout=2.0)
        for t in still:
            t.cancel()
        tasks["stdin"].cancel()
        out, out_total = task_value(tasks["out"], (b"", 0))
        err, err_total = task_value(tasks["err"], (b"", 0))
        returncode = proc.returncode
        status = read_status(st_file)
        result = build_result(
            job=job,
            returncode=returncode,
            stdout=decode_output(out, out_total, limits.max_output_chars),
            stderr=decode_output(err, err_total, limits.max_output_chars),
            timed_out=timed_out,
            duration=duration,
            status=status,
        )
        return Outcome(result, status)
    finally:  # also reached when the caller cancels us
        for t in tasks.values():
            if not t.done():
                t.cancel()
        if proc is not None and proc.returncode is None:
            killpg(proc.pid)
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        if uid is not None and not uid_killed:
            kill_uid(uid)
        free_uid(uid)
        cfg_file.close()
        st_file.close()
        rmtree(workdir)


def task_value(task: asyncio.Future, default):
    """The task's result, or ``default`` if it did not finish cleanly."""
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()
    return default


def rmtree(path: str) -> None:
    """Remove the temp dir even if the child left unreadable/unwritable entries."""

    def retry(func, p, _exc) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)
