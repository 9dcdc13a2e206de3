"""BIG-Bench Hard data: the shipped files (MIT, see data/bbh/LICENSE) or a full local copy."""
from __future__ import annotations

from pathlib import Path

from textgrad_core.errors import ConfigError
from textgrad_core.task import DataError, Example, Splits, check_fits, display_path, read_json

DATA_DIR = Path(__file__).parent / "data" / "bbh"
SUBTASKS = sorted(p.stem for p in DATA_DIR.glob("*.json"))


def bbh_path(subtask: str, data_dir: str | Path | None = None) -> Path:
    """The file of one BBH sub-task, in `data_dir` or the shipped copy."""
    return (Path(data_dir) if data_dir else DATA_DIR) / f"{subtask}.json"


def load_bbh(subtask: str, data_dir: str | Path | None = None) -> list[Example]:
    """All examples of one BBH sub-task, in file order, with ids '<subtask>-<index>'."""
    path = bbh_path(subtask, data_dir)
    directory = path.parent
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.json"))) or "(none found)"
        raise ConfigError(f"No BBH sub-task '{subtask}' in {directory}. Known sub-tasks: {known}.")
    data = read_json(path)
    rows = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise DataError(f"{display_path(path)} is not a BBH file: it needs {{\"examples\": [{{\"input\", \"target\"}}, "
                        "...]}.")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or "input" not in r or "target" not in r:
            raise DataError(f"{display_path(path)} example {i}: not a BBH example (an object with \"input\" and "
                            "\"target\").")
        out.append(Example(id=f"{subtask}-{i}", input=r["input"], target=str(r["target"])))
    return out


def split_bbh(subtask: str, data_dir: str | Path | None, n_train: int, n_val: int) -> Splits:
    """The first n_train examples train, the next n_val validation, the rest (at least one) test."""
    rows = load_bbh(subtask, data_dir)
    check_fits({"n_train": n_train, "n_val": n_val}, len(rows), display_path(bbh_path(subtask, data_dir)), rest="test")
    a, b = n_train, n_train + n_val
    return Splits(train=rows[:a], val=rows[a:b], test=rows[b:])
