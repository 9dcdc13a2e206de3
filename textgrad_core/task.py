"""The task protocol: data splits, initial parameters, the system itself, a metric with feedback, and a simulator rubric."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from textgrad_core.engines.sim import RubricItem, SimWorld  # noqa: F401  (re-exported for task authors)
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
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


class Task(ABC):
    """Subclass this (or register a class with the same methods) to make a task runnable by `experiments.run`."""

    name: str = "task"
    description: str = ""

    @abstractmethod
    def load_splits(self) -> Splits:
        """The fixed, seeded, documented splits."""

    @abstractmethod
    def initial_parameters(self) -> list[Parameter]:
        """Fresh trainable parameters with their initial values."""

    @abstractmethod
    async def forward(self, example: Example, params: ParameterSet, engines: "EngineSet") -> Variable:
        """Run the system on one example with traced ops; return its output Variable."""

    @abstractmethod
    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """Score a prediction and say why, in words."""

    async def loss(self, prediction: Variable, example: Example, engines: "EngineSet") -> Variable:
        """The loss Variable for one example (a metric loss unless the task overrides it)."""
        return MetricLoss(self.metric, name=f"{self.name}_metric")(prediction, example)

    def sim_world(self, splits: Splits) -> SimWorld | None:
        """The simulator's hidden rubric and answers, or None when the task has none."""
        return None

    def info(self) -> dict[str, Any]:
        """A short description for summaries."""
        return {"name": self.name, "description": self.description}
