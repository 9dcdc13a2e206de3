"""Results of a sandbox run: the status records the child writes, and the one place
that turns a finished child into a :class:`SandboxResult`."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from textgrad_core.sandbox.limits import Job

#: The status file is read up to this size (a child cannot make the parent read more).
STATUS_MAX_BYTES = 64 * 1024 * 1024


class SandboxResult(BaseModel):
    """Outcome of one sandbox run.  Never raised - always returned."""

    ok: bool  # exited 0 without timeout/kill (call_function: and returned a value)
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    error: str | None  # short human-readable reason; "blocked: ..." for refused operations
    duration_s: float
    layers: list[str] = Field(default_factory=list)  # isolation layers that were in force


@dataclass
class Outcome:
    """A result together with the raw status records (``return`` holds a call's value)."""

    result: SandboxResult
    status: dict[str, Any]


def decode_output(data: bytes, total: int, limit: int) -> str:
    """Captured bytes as text, with a note when the output was cut to ``limit``."""
    text = data.decode("utf-8", "replace")
    if len(text) > limit or total > len(data):
        text = text[:limit]
        text += f"\n... [output truncated to {limit} characters; {total} bytes in total]"
    return text


def read_status(f) -> dict[str, Any]:
    """The status records the child appended (first value of each key wins)."""
    status: dict[str, Any] = {}
    try:
        size = os.fstat(f.fileno()).st_size
        data = os.pread(f.fileno(), min(size, STATUS_MAX_BYTES), 0)
    except OSError:
        return status
    for line in data.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            if "layers" in rec:
                status.setdefault("layers", rec.get("layers") or [])
                status.setdefault("notes", rec.get("notes") or [])
            else:
                for k, v in rec.items():
                    status.setdefault(k, v)
    if size > STATUS_MAX_BYTES:
        status.setdefault("status_too_large", True)
    return status


SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}


def build_result(
    *,
    job: Job,
    returncode: int | None,
    stdout: str,
    stderr: str,
    timed_out: bool,
    duration: float,
    status: dict[str, Any],
) -> SandboxResult:
    """The single place that turns a finished child into a SandboxResult."""
    limits = job.limits
    error: str | None = None
    if timed_out:
        error = f"timed out after {limits.timeout_s}s"
    elif "launch_error" in status:
        error = f"sandbox failed to start: {status['launch_error']}"
    elif "started" not in status and returncode not in (0, None):
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {returncode}"]
        error = f"sandbox failed to start: {tail[0][:300]}"
    elif status.get("blocked"):
        error = str(status["blocked"])
    elif status.get("memory"):
        error = f"memory limit exceeded ({limits.memory_mb} MB)"
    elif status.get("error"):
        error = str(status["error"])
    elif returncode is not None and returncode < 0:
        sig = -returncode
        name = SIGNAL_NAMES.get(sig, f"signal {sig}")
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and duration >= limits.cpu_s):
            error = f"CPU time limit exceeded ({limits.cpu_s}s)"
        elif sig == signal.SIGXFSZ:
            error = f"file size limit exceeded ({limits.max_file_mb} MB)"
        elif sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            error = f"crashed with {name} (possibly the memory limit of {limits.memory_mb} MB)"
        else:
            error = f"killed by {name}"
    elif returncode not in (0, None):
        last = stderr.strip().splitlines()[-1:] if stderr.strip() else []
        if last and "MemoryError" in last[0]:
            error = f"memory limit exceeded ({limits.memory_mb} MB)"
        elif last:
            error = f"exited with status {returncode}: {last[0][:300]}"
        else:
            error = f"exited with status {returncode}"
    ok = returncode == 0 and not timed_out and error is None
    if ok and job.mode == "call" and "return" not in status:
        ok = False
        error = f"{job.function}() did not return (the process exited with status 0 first)"
    layers = list(status.get("layers") or [])
    if status.get("started") and job.audit:
        layers.append("audit-hook")
    return SandboxResult(
        ok=ok,
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        error=error,
        duration_s=round(duration, 4),
        layers=layers,
    )
