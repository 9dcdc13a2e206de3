"""The command line's first check, before Hydra, pydantic or any engine is imported: a config-group choice that
names no YAML file (`task=no_such_task`) is reported at once, in the words the full preflight would use.

Importing Hydra, composing the config and building the task cost about a second of CPU; a typo in a group
choice is the commonest mistake and needs none of it. Only command lines whose meaning is certain without Hydra
are judged here (plain `group=option` overrides, no sweep, no other config source, no Hydra plug-in that could
add config directories); everything else is left to `experiments.validate.preflight`, which checks it all.
Stdlib only, on purpose: `tests/test_startup.py` checks that this path imports no Hydra, OmegaConf or SDK.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# An override this check understands: `group=option`, nothing Hydra's grammar would read differently.
_SIMPLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([A-Za-z0-9_\-]+)")
_SIMPLE_KEY_VALUE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*=[^,()\[\]{}$*?'\"\\\s]*")
# Hydra's own plug-ins that run jobs; they add no config directory (a SearchPathPlugin would).
_RUNNERS = re.compile(r"hydra_\w+_(launcher|sweeper)")


def group_choice_problem(argv: list[str], config_dir: str | Path | None = None) -> str | None:
    """The one-line problem of a group choice that names no config file, or None (also when unsure)."""
    directory = Path(config_dir or CONFIG_DIR)
    if any(arg.startswith("-") for arg in argv):  # -m, --cfg, --config-dir, ...: Hydra's flags, left to preflight
        return None
    if not all(_SIMPLE_KEY_VALUE.fullmatch(arg) for arg in argv) or any(a.startswith("hydra.") for a in argv):
        return None  # a sweep, an interpolation, a '+'/'~' edit or a Hydra setting: the full check reads it
    if _may_add_config_dirs():
        return None
    for arg in argv:
        match = _SIMPLE.fullmatch(arg)
        if not match:
            continue
        group, option = match.groups()
        group_dir = directory / group
        if option == "null" or not group_dir.is_dir() or (group_dir / f"{option}.yaml").is_file():
            continue
        options = sorted(p.stem for p in group_dir.glob("*.yaml"))
        return f"{group}={option}: no such option; choose from {', '.join(options)}"
    return None


def _may_add_config_dirs() -> bool:
    """True when an installed Hydra plug-in other than a launcher or sweeper could add config directories."""
    try:
        spec = importlib.util.find_spec("hydra_plugins")
    except (ImportError, ValueError):
        return False
    for location in (spec.submodule_search_locations or []) if spec else []:
        try:
            names = os.listdir(location)
        except OSError:
            continue
        for name in names:
            stem = name[:-3] if name.endswith(".py") else name
            if stem.startswith((".", "_")) or _RUNNERS.fullmatch(stem):
                continue
            return True
    return False
