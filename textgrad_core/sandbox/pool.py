"""The warm pool: one hardened zygote per parent process forks a fresh child for every run.

A cold run starts two interpreters (launcher, runner) and builds the kernel layers each time
(~100 ms).  The zygote (``zygote.py``) is started once, through the launcher, inside those
layers (plus a pid namespace) and with the runner and common modules already imported; a run
is then one ``fork`` in it plus the per-run layers (session, directory, uid, rlimits,
environment, audit hook).  The parent keeps every duty it has for cold runs: the wall-clock
timeout, capped output, killing the run's process group and uid, reading the status records.

If the zygote cannot be started, :func:`execute_warm` returns None and the caller runs cold.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time

from textgrad_core.sandbox.launch import kill_uid, task_value
from textgrad_core.sandbox.layers import (
    LAUNCHER,
    Plan,
    alloc_uid,
    child_config,
    child_env,
    free_uid,
    uid_range_usable,
    zygote_config,
)
from textgrad_core.sandbox.limits import MAX_CONCURRENT_SANDBOXES, Job
from textgrad_core.sandbox.results import Outcome, build_result, decode_output, read_status

START_TIMEOUT_S = 20.0


class Zygote:
    """Client of one zygote process: send runs, receive their pids and exit statuses."""

    def __init__(self, kernel: bool) -> None:
        self.kernel = kernel
        self.pid_owner = os.getpid()
        self.runs_root = os.path.realpath(tempfile.mkdtemp(prefix="tg_sandbox_pool_"))
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.lock = threading.Lock()
        self.waiters: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future, asyncio.Future]] = {}
        # run id -> pid (in the zygote's pid namespace) of each run forked and not yet reaped
        self.live: dict[int, int] = {}
        self.host_pid: int | None = None
        self.next_id = 0
        self.alive = True
        cfg_file, st_file = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        try:
            cfg = zygote_config(runs_root=self.runs_root, kernel=kernel, control_fd=theirs.fileno(),
                                disk_mb=64 * MAX_CONCURRENT_SANDBOXES)
            cfg_file.write(json.dumps(cfg).encode("ascii"))
            cfg_file.flush()
            argv = [Plan.get().exe, "-I", "-S", "-B", LAUNCHER, str(cfg_file.fileno()), str(st_file.fileno())]
            # Pipes, not /dev/null: the zygote's std streams are created seekable=False, as in a
            # cold run, so that each child's reconfigure() of them works once it has its own pipes.
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                cwd=self.runs_root, env=child_env(self.runs_root), close_fds=True, start_new_session=True,
                pass_fds=(cfg_file.fileno(), st_file.fileno(), theirs.fileno()))
            theirs.close()
            self.proc.stdin.close()
            self.output = b""
            threading.Thread(target=self._drain, name="sandbox-zygote-output", daemon=True).start()
            self.sock.settimeout(START_TIMEOUT_S)
            try:
                ready = json.loads(self.sock.recv(65536) or b"{}")
            except (OSError, ValueError):
                ready = {}
            self.sock.settimeout(None)
            status = read_status(st_file)
            if not ready.get("ready") or "launch_error" in status:
                self.close()
                detail = status.get("launch_error") or self.output.decode("utf-8", "replace")[-300:] or "no reply"
                raise OSError(f"the sandbox zygote did not start: {detail}")
            self.layers = list(status.get("layers") or [])
            self.notes = list(status.get("notes") or [])
            self.host_pid = _only_child(self.proc.pid)
        finally:
            cfg_file.close()
            st_file.close()
        threading.Thread(target=self._read_replies, name="sandbox-zygote", daemon=True).start()

    def _drain(self) -> None:
        """Keep the tail of the zygote's own output (diagnostics), so it can never block on it."""
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            self.output = (self.output + chunk)[-4096:]

    def _read_replies(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            msg = json.loads(data)
            with self.lock:
                entry = self.waiters.get(msg.get("id"))
                if "pid" in msg:
                    self.live[msg.get("id")] = msg["pid"]
                elif "exit" in msg:
                    self.live.pop(msg.get("id"), None)
                if entry is not None and "exit" in msg:
                    del self.waiters[msg["id"]]
            if entry is None:
                continue
            loop, pid_fut, exit_fut = entry
            fut, value = (pid_fut, msg["pid"]) if "pid" in msg else (exit_fut, msg.get("exit"))
            _resolve(loop, fut, value)
        self.alive = False
        with self.lock:
            pending, self.waiters = list(self.waiters.values()), {}
        for loop, pid_fut, exit_fut in pending:  # the zygote died: so did every run in it
            _resolve(loop, pid_fut, None)
            _resolve(loop, exit_fut, None)

    def submit(self, workdir: str, fds: list[int]) -> tuple[int, asyncio.Future, asyncio.Future]:
        """Ask for a run; returns (run id, future of its pid, future of its returncode)."""
        loop = asyncio.get_running_loop()
        pid_fut, exit_fut = loop.create_future(), loop.create_future()
        with self.lock:
            self.next_id += 1
            run = self.next_id
            self.waiters[run] = (loop, pid_fut, exit_fut)
            socket.send_fds(self.sock, [json.dumps({"run": run, "workdir": workdir}).encode()], fds)
        return run, pid_fut, exit_fut

    def tell(self, what: str, run: int) -> None:
        """Send ``{"kill": run}`` or ``{"done": run}`` (a dead zygote has nothing left to do)."""
        try:
            with self.lock:
                self.sock.send(json.dumps({what: run}).encode())
        except OSError:
            pass

    def strays(self, uid: int | None = None) -> bool:
        """Whether something of a finished run may still be alive among the zygote's children.

        Every process of a finished run that is still alive descends from a child of the
        zygote: when a run's main process dies, the kernel hands its children to the zygote
        (pid 1 of the pid namespace) before the zygote can reap it and report its exit.  With
        the run's own ``uid`` the test is exact: a child of that uid (only the run's code ever
        ran as it) is a leftover.  Without one, any child that is not a live run's main
        process counts.  So this one short list tells whether the costly scan of every
        process (``kill_uid``) has anything to find; if it cannot be read, it has."""
        if self.host_pid is None:
            return True
        try:
            with open(f"/proc/{self.host_pid}/task/{self.host_pid}/children", "rb") as f:
                children = f.read().split()
        except OSError:
            return True
        with self.lock:
            mains = set(self.live.values())
        for child in children:
            try:
                with open(b"/proc/%s/status" % child, "rb") as f:
                    status = f.read()
                if uid is not None:  # "Uid:\treal\teffective\tsaved\tfs"
                    if int(status.split(b"\nUid:", 1)[1].split()[0]) == uid:
                        return True
                    continue
                ns_pid = int(status.split(b"\nNSpid:", 1)[1].split(b"\n", 1)[0].split()[-1])
            except FileNotFoundError:
                continue  # reaped meanwhile: gone
            except (OSError, ValueError, IndexError):
                return True
            if ns_pid not in mains:
                return True
        return False

    def cpu_seconds(self) -> float | None:
        """CPU time the zygote used so far, its reaped children (the runs) included."""
        if self.host_pid is None:
            return None
        try:
            with open(f"/proc/{self.host_pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # utime, stime, cutime, cstime: fields 14-17 of stat(5), counted after "(comm)"
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        """Stop the zygote (its pid namespace takes every run with it)."""
        self.alive = False
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.kill()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired, AttributeError):
            pass
        try:
            os.rmdir(self.runs_root)
        except OSError:
            pass


def _only_child(pid: int) -> int | None:
    """The pid of the single child of process ``pid`` (the launcher's child is the zygote)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            children = f.read().split()
    except OSError:
        return None
    return int(children[0]) if len(children) == 1 else None


def _resolve(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, value) -> None:
    def set_value() -> None:
        if not fut.done():
            fut.set_result(value)
    try:
        loop.call_soon_threadsafe(set_value)
    except RuntimeError:  # that loop is closed: nobody waits any more
        pass


_zygotes: dict[bool, Zygote | None] = {}
_zygotes_lock = threading.Lock()
_failed: dict[bool, float] = {}


def zygote(kernel: bool) -> Zygote | None:
    """This process's zygote (started on first use, restarted if it died); None if it cannot start."""
    with _zygotes_lock:
        z = _zygotes.get(kernel)
        if z is not None and z.alive and z.pid_owner == os.getpid():
            return z
        if kernel in _failed and time.monotonic() - _failed[kernel] < 60:
            return None
        try:
            z = _zygotes[kernel] = Zygote(kernel)
        except OSError:
            _failed[kernel] = time.monotonic()
            _zygotes[kernel] = None
            return None
        return z


def shutdown() -> None:
    """Stop every zygote of this process (tests and benchmarks measure cold starts after it)."""
    with _zygotes_lock:
        for z in _zygotes.values():
            if z is not None:
                z.close()
        _zygotes.clear()
        _failed.clear()


class Capture:
    """One output pipe of a run, read by the event loop as data arrives, keeping at most ``cap``
    bytes (the rest is drained and counted): a bare reader callback, cheaper than the stream
    transport and protocol per pipe that stood out in the parent's profile of a warm run."""

    def __init__(self, fd: int, cap: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.fd, self.cap = fd, cap
        self.buf, self.total = bytearray(), 0
        self.done: asyncio.Future = self.loop.create_future()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._ready)

    def _ready(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        self.total += len(chunk)
        if len(self.buf) < self.cap:
            self.buf += chunk[: self.cap - len(self.buf)]

    def close(self) -> None:
        """Stop reading and close the pipe (at its end, or when the run is abandoned)."""
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if not self.done.done():
            self.done.set_result((bytes(self.buf), self.total))


async def execute_warm(job: Job, *, kernel: bool) -> Outcome | None:
    """Run ``job`` in a child forked by the zygote; None when no zygote is available."""
    z = zygote(kernel)
    if z is None:
        return None
    limits = job.limits
    uid = alloc_uid() if kernel and uid_range_usable() else None
    workdir = os.path.join(z.runs_root, "run-" + secrets.token_hex(8))
    cfg_file, st_file = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if job.stdin else (os.open(os.devnull, os.O_RDONLY), -1)
    captures: list[Capture] = []
    tasks: dict[str, asyncio.Future] = {}
    run = exit_fut = None
    killed = False
    try:
        cfg = child_config(job, workdir=workdir, uid=uid, kernel=kernel, mounts=False)
        cfg["zygote_layers"] = z.layers
        cfg_file.write(json.dumps(cfg).encode("ascii"))
        cfg_file.flush()
        start = time.monotonic()
        try:
            extra = [job.peer] if job.peer is not None else []
            run, pid_fut, exit_fut = z.submit(workdir, [cfg_file.fileno(), st_file.fileno(), in_r, out_w, err_w,
                                                        *extra])
        except OSError:
            return None
        if job.on_started is not None:
            job.on_started()
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        in_r = out_w = err_w = -1
        cap = limits.max_output_chars * 4 + 4
        captures += [Capture(out_r, cap), Capture(err_r, cap)]
        out_r = err_r = -1
        tasks["out"], tasks["err"] = captures[0].done, captures[1].done
        if in_w >= 0:  # the thread owns (and closes) the write end from here on
            fd, in_w = in_w, -1
            tasks["stdin"] = asyncio.ensure_future(asyncio.to_thread(_write_all, fd, job.stdin.encode("utf-8")))
        await asyncio.wait({exit_fut}, timeout=limits.timeout_s)
        timed_out = not exit_fut.done()
        duration = time.monotonic() - start
        # The run's main process is gone (or timed out): nothing of it may outlive it.
        if timed_out:
            z.tell("kill", run)
            await asyncio.wait({exit_fut}, timeout=2.0)
        _kill_leftovers(z, run, uid, exit_fut)
        killed = True
        _, still = await asyncio.wait({tasks["out"], tasks["err"]}, timeout=2.0)
        for t in still:
            t.cancel()
        if not pid_fut.done() and not exit_fut.done():
            return None  # the zygote died before it forked: run cold instead
        returncode = exit_fut.result() if exit_fut.done() else None
        out, out_total = task_value(tasks["out"], (b"", 0))
        err, err_total = task_value(tasks["err"], (b"", 0))
        status = read_status(st_file)
        result = build_result(job=job, returncode=returncode,
                              stdout=decode_output(out, out_total, limits.max_output_chars),
                              stderr=decode_output(err, err_total, limits.max_output_chars),
                              timed_out=timed_out, duration=duration, status=status)
        return Outcome(result, status)
    finally:  # also reached when the caller cancels us
        for t in tasks.values():
            if not t.done():
                t.cancel()
        if run is not None:
            if not killed:
                _kill_leftovers(z, run, uid, exit_fut)
            z.tell("done", run)
        free_uid(uid)
        for capture in captures:
            capture.close()
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            if fd >= 0:
                os.close(fd)
        cfg_file.close()
        st_file.close()


def _kill_leftovers(z: Zygote, run: int, uid: int | None, exit_fut: asyncio.Future | None) -> None:
    """Kill the run's process group and every process of its uid, unless the zygote's children
    prove there is nothing left: the run's main process was reaped and nothing the zygote did
    not fork survives.  (``done`` kills the group once more, on its way to removing the run's
    directory.)"""
    if exit_fut is None or not exit_fut.done() or z.strays(uid):
        z.tell("kill", run)
        if uid is not None:
            kill_uid(uid)


def _write_all(fd: int, data: bytes) -> None:
    """Write the child's stdin and close it (a child that exits early is fine)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass
    finally:
        os.close(fd)
