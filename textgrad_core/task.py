"""The task protocol: data splits, initial parameters, the system itself, a metric with feedback, and a simulator rubric.

Also the checks every task's data goes through (sizes in range, splits non-empty and disjoint) and readers for JSON
data files that name the file and line of a malformed record.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from textgrad_core.engines.sim import RubricItem, SimWorld  # noqa: F401  (re-exported for task authors)
from textgrad_core.errors import ConfigError
from textgrad_core.loss import MetricLoss, MetricResult
from textgrad_core.variable import Parameter, ParameterSet, Variable

if TYPE_CHECKING:
    from textgrad_core.engines import EngineSet


class Example(BaseModel):
    """One data point: an id stable across runs, the input, the expected output."""

    id: str
    input: Any
    target: Any
    meta: dict[str, Any] = Field(default_factory=dict)


class Splits(BaseModel):
    """Train, validation and test examples; the test split never reaches a call that can change a parameter."""

    train: list[Example]
    val: list[Example]
    test: list[Example]

    def sizes(self) -> dict[str, int]:
        """How many examples each split holds."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


class DataError(ConfigError):
    """A task's data is unusable as configured: a malformed file, a split too small, an example in two splits."""


SPLIT_NAMES = ("train", "val", "test")


def _text_key(value: Any) -> str:
    """An example input as one comparable string: whitespace collapsed, structured inputs as sorted-key JSON."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return " ".join(text.split())


def check_splits(splits: Splits, task_name: str, *, allow_empty_test: bool = False,
                 allow_overlap: bool = False) -> None:
    """Raise DataError unless train and val (and test, unless allowed empty) hold examples and no example is in two splits.

    An example is in two splits when its id or its input text (whitespace collapsed) appears in both: a leak would
    let a test (or validation) example shape the parameters, and its score would no longer measure anything.
    """
    if not isinstance(splits, Splits):
        raise DataError(f"task {task_name}: load_splits() returned {type(splits).__name__}, not a "
                        "textgrad_core.task.Splits.")
    required = ("train", "val") if allow_empty_test else SPLIT_NAMES
    for name in required:
        if not getattr(splits, name):
            raise DataError(f"task {task_name}: the {name} split is empty; it needs at least 1 example "
                            "(check the task's size options and its data).")
    if allow_overlap:
        return
    for i, first in enumerate(SPLIT_NAMES):
        for second in SPLIT_NAMES[i + 1:]:
            later = getattr(splits, second)
            ids = {e.id for e in later}
            texts = {_text_key(e.input) for e in later}
            shared = [e for e in getattr(splits, first) if e.id in ids or _text_key(e.input) in texts]
            if shared:
                raise DataError(f"task {task_name}: data leak, {len(shared)} example(s) are in both {first} and "
                                f"{second} (e.g. {shared[0].id}, matched by id or by input text); the splits must "
                                "be disjoint: fix the data or the split options.")


def check_size(option: str, value: Any, *, minimum: int = 1, optional: bool = False) -> None:
    """Raise ConfigError unless the size option `task.<option>` is an integer >= minimum (or null when optional)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        shown = "null" if value is None else value
        allowed = f"an integer >= {minimum}" + (" or null" if optional else "")
        raise ConfigError(f"task.{option}={shown}: must be {allowed}.")


def check_fits(sizes: dict[str, int], available: int, source: str, *, rest: str = "", hint: str = "") -> None:
    """Raise DataError naming the source, the examples found and needed, when `sizes` (option -> count) do not fit.

    `rest` names a split that takes what is left and needs at least one example (e.g. "test"); `hint` is added
    to the fix (e.g. where to get more data).
    """
    reserve = 1 if rest else 0
    needed = sum(sizes.values()) + reserve
    if needed <= available:
        return
    parts = " + ".join(f"task.{k}={v}" for k, v in sizes.items()) + (f" + at least 1 for {rest}" if rest else "")
    largest = max(sizes, key=lambda k: sizes[k])
    room = available - reserve - (sum(sizes.values()) - sizes[largest])
    fix = (f"task.{largest} can be at most {room}" if room >= 1 else
           f"lower {' + '.join(f'task.{k}' for k in sizes)} to at most {available - reserve} together")
    raise DataError(f"{source} has {available} examples but the splits need {needed} ({parts}): {fix}"
                    f"{', ' + hint if hint else ''}.")


def display_path(path: str | Path) -> str:
    """A data file's path as a user would type it: relative to the working directory or the repository if inside."""
    path = Path(path)
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return str(path)


def read_json(path: str | Path) -> Any:
    """The JSON value of a file; DataError naming the file and line when it is not valid JSON."""
    path = Path(path)
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{display_path(path)} line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}).") \
            from None


def read_jsonl(path: str | Path, opener: Any = None) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a JSON-lines file; DataError naming the file and line of a bad one."""
    path = Path(path)
    open_file = opener or open
    try:
        with open_file(path, "rt", encoding="utf-8") as fh:
            lines = list(fh)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{display_path(path)}: cannot be read ({exc}).") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{display_path(path)} line {number}: not valid JSON ({exc.msg}, column {exc.colno}).") \
                from None
        except RecursionError:  # json.loads of a line nested thousands deep
            raise DataError(f"{display_path(path)} line {number}: nested too deeply to be a data record.") from None
    return rows


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{display_path(path)}: cannot be read ({exc}).") from None


class Task(ABC):
    """Subclass this (or register a class with the same methods) to make a task runnable by `experiments.run`."""

    name: str = "task"
    description: str = ""
    # A task whose test split may be empty (e.g. one with no held-out data) says so here.
    allows_empty_test: bool = False
    # A task that deliberately uses the same examples in several splits (e.g. optimizing one program instance).
    allows_split_overlap: bool = False

    @abstractmethod
    def load_splits(self) -> Splits:
        """The fixed, seeded, documented splits."""

    @abstractmethod
    def initial_parameters(self) -> list[Parameter]:
        """Fresh trainable parameters with their initial values."""

    @abstractmethod
    async def forward(self, example: Example, params: ParameterSet, engines: "EngineSet") -> Variable:
        """Run the system on one example with traced ops; return its output Variable."""

    def checked_splits(self) -> Splits:
        """`load_splits()`, checked: train and val non-empty, test non-empty unless allowed, no example in two splits."""
        splits = self.load_splits()
        check_splits(splits, self.name, allow_empty_test=self.allows_empty_test,
                     allow_overlap=self.allows_split_overlap)
        return splits

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """Score a prediction and say why, in words (a task that overrides loss() needs no metric)."""
        raise NotImplementedError(f"{type(self).__name__}: override metric() or loss() to score a prediction.")

    async def loss(self, prediction: Variable, example: Example, engines: "EngineSet") -> Variable:
        """The loss Variable for one example (a metric loss unless the task overrides it)."""
        return MetricLoss(self.metric, name=f"{self.name}_metric")(prediction, example)

    def sim_world(self, splits: Splits) -> SimWorld | None:
        """The simulator's hidden rubric and answers, or None when the task has none."""
        return None

    def info(self) -> dict[str, Any]:
        """A short description for summaries."""
        return {"name": self.name, "description": self.description}
