"""Optional extras (launchers, ray, report, telemetry, mlflow): check that one is installed, or install it."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

from textgrad_core.errors import ConfigError

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# A module per extra whose presence means the extra is installed.
PROBES = {
    "launchers": ["hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher"],
    "ray": ["hydra_plugins.hydra_ray_launcher", "ray"],
    "report": ["matplotlib"],
    "telemetry": ["opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter"],
    "mlflow": ["mlflow"],
}


def has_extra(extra: str) -> bool:
    """True when every probe module of the extra can be imported."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in PROBES[extra])
    except ModuleNotFoundError:  # a missing parent package (e.g. hydra_plugins before any plugin)
        return False


def require_extra(extra: str) -> None:
    """Raise one line naming the install command when the extra is missing."""
    if not has_extra(extra):
        raise ConfigError(f"This needs the '{extra}' extra: pip install -e '.[{extra}]'")


def extra_requirements(extra: str) -> list[str]:
    """The requirement strings pyproject.toml declares for an extra."""
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    return list(data["project"]["optional-dependencies"][extra])


def install_extra(extra: str, timeout_s: float = 900) -> str | None:
    """Install the extra's requirements into this interpreter when missing; None on success, else why it failed."""
    if has_extra(extra):
        return None
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *extra_requirements(extra)],
                          capture_output=True, text=True, timeout=timeout_s)
    importlib.invalidate_caches()
    if proc.returncode != 0 or not has_extra(extra):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["probe modules still missing"]
        return f"pip install of the '{extra}' extra failed: {tail[0]}"
    return None
