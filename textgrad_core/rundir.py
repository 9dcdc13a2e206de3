"""The run directory: resolved config, metrics, call log, gradients, every parameter version, checkpoint, summary."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textgrad_core.runlog import JsonlLog, redact, write_json_atomic
from textgrad_core.variable import Parameter, ParameterVersion


class RunDir:
    """Files of one run, each written as events happen so that a killed run leaves a readable record."""

    def __init__(self, path: str | Path, simulated: bool = False):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.simulated = simulated
        # Every record of a simulated run says so, whichever component wrote it.
        tag = {"simulated": simulated}
        self.calls = JsonlLog(self.path / "calls.jsonl")  # each call record carries its engine's own flag
        self.metrics = JsonlLog(self.path / "metrics.jsonl", tag)
        self.events = JsonlLog(self.path / "events.jsonl", tag)
        self.gradients = JsonlLog(self.path / "gradients.jsonl", tag)
        self.parameters = JsonlLog(self.path / "parameters.jsonl", tag)

    def write_config(self, text: str) -> None:
        """The resolved config (secrets masked)."""
        (self.path / "config.yaml").write_text(redact(text), encoding="utf-8")

    def metric(self, record: dict[str, Any]) -> None:
        self.metrics.write(record)

    def parameter_version(self, param: Parameter, entry: ParameterVersion) -> None:
        self.parameters.write({"param": param.id, "version": entry.version, "step": entry.step, "reason": entry.reason,
                               "value": entry.value, "simulated": self.simulated})

    def checkpoint(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.path / "checkpoint.json", state)

    def summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.path / "summary.json", summary)

    def read_summary(self) -> dict[str, Any]:
        return json.loads((self.path / "summary.json").read_text(encoding="utf-8"))
