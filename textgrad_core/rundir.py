"""The run directory: one run, one directory — config, run log, checkpoint and summary.

A run claims its directory by creating `run.json` exclusively, so two runs (two jobs of a sweep, two processes
started in the same second, two machines on one shared filesystem) never write into one directory. Writing
into a directory that already holds a run is refused unless that run is being resumed.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from textgrad_core.errors import ConfigError
from textgrad_core.runlog import JsonlLog, redact, write_json_atomic
from textgrad_core.variable import Parameter, ParameterVersion

CLAIM = "run.json"
# The logs that describe the run's state; on resume they are cut back to the checkpoint. calls.jsonl and
# events.jsonl are facts (calls paid, faults seen) and are kept whole.
STATE_LOGS = ("metrics", "gradients", "parameters", "graphs")
LOGS = ("calls", "events", *STATE_LOGS)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def run_name(*parts: str, when: float | None = None) -> str:
    """A readable, collision-free name: time, the given parts (task, credit, optimizer) and a random suffix."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(when))
    words = [_UNSAFE.sub("-", str(p)).strip("-")[:40] for p in parts if p]
    return "_".join([stamp, *words, secrets.token_hex(3)])


class RunDir:
    """Files of one run, each written as events happen so that a killed run leaves a readable record."""

    def __init__(self, path: str | Path, simulated: bool = False, *, resume: bool = False,
                 info: dict[str, Any] | None = None):
        self.path = Path(path)
        self.simulated = simulated
        if resume:
            if not (self.path / "checkpoint.json").is_file():
                raise ConfigError(f"resume={self.path}: no checkpoint.json there; give the directory of a run "
                                  "that completed at least its initial evaluation")
            self.info = json.loads((self.path / CLAIM).read_text(encoding="utf-8"))
        else:
            self.info = self._claim(info or {})
        tag = {"simulated": simulated}
        # Every record of a simulated run says so, whichever component wrote it.
        self.calls = JsonlLog(self.path / "calls.jsonl")  # each call record carries its engine's own flag
        self.metrics = JsonlLog(self.path / "metrics.jsonl", tag)
        self.events = JsonlLog(self.path / "events.jsonl", tag)
        self.gradients = JsonlLog(self.path / "gradients.jsonl", tag)
        self.parameters = JsonlLog(self.path / "parameters.jsonl", tag)
        self.graphs = JsonlLog(self.path / "graphs.jsonl", tag)  # one example's recorded graph per step

    @property
    def run_id(self) -> str:
        return str(self.info.get("run_id", self.path.name))

    def _claim(self, info: dict[str, Any]) -> dict[str, Any]:
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"run_id": self.path.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "simulated": self.simulated, **info}
        try:
            fd = os.open(self.path / CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise ConfigError(f"run_dir={self.path} already holds a run; choose another run_dir (or leave it unset "
                              f"for a fresh one), or continue that run with resume={self.path}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(redact(json.dumps(record, indent=2, default=str)))
        return record

    @classmethod
    def create(cls, root: str | Path, *parts: str, simulated: bool = False,
               info: dict[str, Any] | None = None) -> "RunDir":
        """A fresh run directory under `root`, named by `run_name(*parts)`."""
        for _ in range(8):  # a clash of the random suffix in the same second is retried, never shared
            path = Path(root) / run_name(*parts)
            if not path.exists():
                try:
                    return cls(path, simulated, info=info)
                except ConfigError:
                    continue
        raise ConfigError(f"could not claim a fresh run directory under {root}")

    # ---- resume -----------------------------------------------------------------------------
    def offsets(self) -> dict[str, int]:
        """The size of each log now (stored in the checkpoint: a resume cuts the state logs back to it, and counts
        the calls logged after it, which were paid although their step did not complete)."""
        return {name: _size(getattr(self, name).path) for name in ("calls", *STATE_LOGS)}

    def calls_after(self, offset: int) -> list[dict[str, Any]]:
        """The call records written after byte `offset` of calls.jsonl (complete lines only)."""
        path = self.calls.path
        if not path.exists():
            return []
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        return [json.loads(line) for line in data.split(b"\n") if line.strip()]

    def rewind(self, offsets: dict[str, int]) -> None:
        """Cut the state logs back to a checkpoint's sizes, and drop a half-written last line of every log."""
        for name in LOGS:
            path = getattr(self, name).path
            if not path.exists():
                continue
            size = offsets.get(name) if name in STATE_LOGS else None
            with open(path, "rb+") as fh:
                data = fh.read() if size is None else fh.read(size)
                keep = data[: data.rfind(b"\n") + 1] if not data.endswith(b"\n") else data
                fh.truncate(len(keep))

    # ---- writing ------------------------------------------------------------------------------
    def write_config(self, text: str) -> None:
        """The resolved config (secrets masked); a simulated run says so on its first line."""
        head = "# SIMULATION: this run uses the offline simulator engine; its scores are not LLM results.\n"
        (self.path / "config.yaml").write_text((head if self.simulated else "") + redact(text), encoding="utf-8")

    def metric(self, record: dict[str, Any]) -> None:
        self.metrics.write(record)

    def parameter_version(self, param: Parameter, entry: ParameterVersion, call_ids: list[str] = ()) -> None:
        """One parameter version, with the request ids of the optimizer calls that produced it (if any)."""
        self.parameters.write({"param": param.id, "version": entry.version, "step": entry.step, "reason": entry.reason,
                               "value": entry.value, "simulated": self.simulated, "call_ids": list(call_ids)})

    def checkpoint(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.path / "checkpoint.json", state)

    def read_checkpoint(self) -> dict[str, Any]:
        return json.loads((self.path / "checkpoint.json").read_text(encoding="utf-8"))

    def summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.path / "summary.json", summary)

    def read_summary(self) -> dict[str, Any]:
        return json.loads((self.path / "summary.json").read_text(encoding="utf-8"))


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
