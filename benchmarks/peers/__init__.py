"""The peers (TextGrad, Trace) expressing workloads (a) and (b), each installed into its own virtualenv."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.measure import run_client

HERE = Path(__file__).resolve().parent
PEERS = {"textgrad": "textgrad", "trace": "trace-opt"}  # peer -> the PyPI package installed for it


def install(peer: str, workdir: Path) -> tuple[Path | None, str]:
    """The peer's virtualenv python under `workdir` (created and installed once), or None and why not."""
    venv = workdir / "venvs" / peer
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists():
        return python, stamp.read_text()
    try:
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True, text=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", PEERS[peer]], check=True, capture_output=True,
                       text=True, timeout=1200)
        version = subprocess.run([str(python), "-m", "pip", "show", PEERS[peer]], capture_output=True, text=True,
                                 timeout=120).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return None, f"pip install {PEERS[peer]} failed: {str(detail).strip().splitlines()[-1:] or exc}"
    line = next((ln for ln in version.splitlines() if ln.startswith("Version:")), "Version: ?")
    stamp.write_text(f"{PEERS[peer]} {line.split(':', 1)[1].strip()}")
    return python, stamp.read_text()


def fresh_cache_dir(workdir: Path, name: str) -> Path:
    """An empty cache directory for one peer run. The peers' disk caches (TextGrad's keys every prompt) would
    otherwise answer from an earlier `make bench` in the same work dir and the server would see only the misses."""
    cache = workdir / "peer_cache" / name
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    return cache


def run(peer: str, workload: str, latency: float, workdir: Path) -> dict[str, Any]:
    """One run of the peer's version of `workload` against a fresh server; `error` says why when it cannot run."""
    python, version = install(peer, workdir)
    if python is None:
        return {"name": f"{peer}_{workload}", "error": version}
    name = f"{peer}_{workload}_{int(latency * 1000)}ms"
    cache = fresh_cache_dir(workdir, name)
    env = {"XDG_CACHE_HOME": str(cache), "TEXTGRAD_LOG_DIR": str(workdir / "peer_logs"), "LITELLM_LOG": "ERROR"}
    figures = run_client([str(python), str(HERE / f"run_{peer}.py"), "--workload", workload, "--out", "{out}"],
                         workdir, name, latency, env=env)
    figures["version"] = version
    if figures["returncode"] != 0:
        figures["error"] = f"exit code {figures['returncode']}: {figures['stderr_tail'].strip().splitlines()[-1:]}"
    return figures
