"""Shared test helper: run `python -m experiments.run` as a user would, in a scratch working directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = ("trainer.progress=false", "trainer.val_size=10", "trainer.test_size=10")


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TEXTGRAD_SWEEP_ID"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_cli(cwd: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """One CLI call with `cwd` as working directory (so runs/ and .cache/ land there)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "experiments.run", *overrides], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def popen_cli(cwd: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.run", *overrides], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_dirs(root: Path) -> list[Path]:
    """Every directory under `root` that a run claimed (it holds run.json)."""
    return sorted(p.parent for p in root.rglob("run.json"))


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
