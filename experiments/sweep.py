"""A sweep's index: one entry per job (overrides, status, run directory, headline scores), safe for parallel jobs."""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from textgrad_core.runlog import write_json_atomic

SWEEP_ID_ENV = "TEXTGRAD_SWEEP_ID"
INDEX = "index.json"


def sweep_id() -> str:
    """The id of this sweep: made once in the launching process and inherited by every job's process."""
    value = os.environ.get(SWEEP_ID_ENV)
    if not value:
        value = os.environ[SWEEP_ID_ENV] = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{secrets.token_hex(3)}"
    return value


_resolved: list[Path] = []  # sweep directories this process resolved (the launching process resolves its sweep's)


def sweep_dir(runs_root: str) -> str:
    """`${sweep_dir:${runs_root}}`: this sweep's directory, `<runs_root>/sweep_<id>`, remembered by the launcher."""
    path = Path(str(runs_root)) / f"sweep_{sweep_id()}"
    if path not in _resolved:
        _resolved.append(path)
    return str(path)


def find_index(sweep: str) -> dict[str, Any] | None:
    """The index of the sweep with id `sweep` that this process launched, or None when it wrote none."""
    for path in _resolved:
        if path.name == f"sweep_{sweep}" and (path / INDEX).exists():
            return read_index(path)
    return None


@contextmanager
def _locked(sweep_dir: Path) -> Iterator[None]:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / ".index.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_index(sweep_dir: str | Path) -> dict[str, Any]:
    path = Path(sweep_dir) / INDEX
    if not path.exists():
        return {"sweep_dir": str(sweep_dir), "jobs": []}
    return json.loads(path.read_text(encoding="utf-8"))


def record_job(sweep_dir: str | Path, job: int, **fields: Any) -> None:
    """Create or update the index entry of one job (jobs of a parallel launcher write one at a time)."""
    sweep_dir = Path(sweep_dir)
    with _locked(sweep_dir):
        index = read_index(sweep_dir)
        jobs = {j["job"]: j for j in index["jobs"]}
        jobs[job] = {**jobs.get(job, {"job": job}), **fields}
        index["jobs"] = [jobs[k] for k in sorted(jobs)]
        write_json_atomic(sweep_dir / INDEX, index)


def job_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline fields of a finished job's summary."""
    return {"status": summary.get("status"), "val": summary.get("val"), "test": summary.get("test"),
            "cost_usd": (summary.get("usage") or {}).get("cost_usd"), "steps": summary.get("steps"),
            "simulated": summary.get("simulated"), "stop_reason": summary.get("stop_reason")}
