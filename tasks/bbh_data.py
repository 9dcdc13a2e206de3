"""BIG-Bench Hard data: the shipped files (MIT, see data/bbh/LICENSE) or a full local copy."""
from __future__ import annotations

import json
from pathlib import Path

from textgrad_core.errors import ConfigError
from textgrad_core.task import Example

DATA_DIR = Path(__file__).parent / "data" / "bbh"
SUBTASKS = sorted(p.stem for p in DATA_DIR.glob("*.json"))


def load_bbh(subtask: str, data_dir: str | Path | None = None) -> list[Example]:
    """All examples of one BBH sub-task, in file order, with ids '<subtask>-<index>'."""
    directory = Path(data_dir) if data_dir else DATA_DIR
    path = directory / f"{subtask}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.json"))) or "(none found)"
        raise ConfigError(f"No BBH sub-task '{subtask}' in {directory}. Known sub-tasks: {known}.")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["examples"]
        return [Example(id=f"{subtask}-{i}", input=r["input"], target=str(r["target"])) for i, r in enumerate(rows)]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a BBH file ({{'examples': [{{'input', 'target'}}]}}): {exc}") from exc
