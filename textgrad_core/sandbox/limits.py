"""What one sandbox run is asked to do: its resource limits and its job description."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

#: Maximum number of sandbox children running at the same time (per event loop).
MAX_CONCURRENT_SANDBOXES = max(2, 2 * (os.cpu_count() or 1))


class SandboxLimits(BaseModel):
    """Resource limits of one sandbox run."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(5.0, gt=0, description="wall-clock timeout in seconds")
    memory_mb: int = Field(512, ge=32, description="address-space limit (RLIMIT_AS)")
    cpu_s: int = Field(5, ge=1, description="CPU-time limit (RLIMIT_CPU)")
    max_output_chars: int = Field(20000, ge=0, description="stdout/stderr are truncated to this")
    max_file_mb: int = Field(16, ge=1, description="largest file the child may write (RLIMIT_FSIZE)")
    disk_mb: int = Field(64, ge=1, description="size of the private tmpfs temp dir, when available")
    max_procs: int = Field(16, ge=1, description="tasks (processes + threads) of the run (RLIMIT_NPROC)")


@dataclass
class Job:
    """One program to run: ``mode="run"`` runs ``code`` as ``__main__``; ``mode="call"``
    defines it and calls ``function(*args, **kwargs)``."""

    code: str
    limits: SandboxLimits
    mode: str = "run"  # "run" | "call" | "serve" (the program under test of a checked run)
    stdin: str = ""
    files: dict[str, str] = field(default_factory=dict)
    function: str | None = None
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    # Tests switch the audit hook off to prove the kernel layers hold on their own.  Not a
    # parameter of the public API: user code cannot reach it (it only chooses the code).
    audit: bool = True
    kernel: bool = True
    # False: a cold start (two fresh interpreters) instead of a fork of the warm zygote.
    warm: bool = True
    # A checked run's end of the socket between judge and program (see checked.py); the
    # executor hands it to the child, then calls ``on_started`` so the parent can close it.
    peer: int | None = None
    on_started: object = None


def validate_files(files: dict[str, str] | None) -> dict[str, str]:
    """Normalised ``{relative path: text}`` of the files to create in the temp dir;
    raises ValueError/TypeError for absolute paths, ``..`` and non-text contents."""
    out: dict[str, str] = {}
    for name, content in (files or {}).items():
        parts = name.replace("\\", "/").split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"sandbox: invalid file name {name!r} (must be a plain relative path)")
        if not isinstance(content, str):
            raise TypeError(f"sandbox: content of {name!r} must be str")
        out["/".join(parts)] = content
    return out
