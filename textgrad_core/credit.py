"""The credit-assignment protocol: from feedback on outputs to feedback for each trainable parameter."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from textgrad_core.engines import Engine
from textgrad_core.graph import Graph
from textgrad_core.variable import Parameter, Variable

# What a credit strategy hands to the optimizer.
PER_PARAMETER = "per_parameter"  # feedback text for each parameter, per example
TRACE = "trace"  # a serialized execution trace with the feedback, for a joint update
SCORES = "scores"  # only values and scores (the OPRO setting)


@dataclass
class ExampleTrace:
    """One forward pass of the minibatch: its recorded graph, its output and the loss on it."""

    example_id: str
    output: Variable
    loss: Variable
    graph: Graph

    @property
    def score(self) -> float:
        return self.loss.score if self.loss.score is not None else 0.0


@dataclass
class ParameterFeedback:
    """Feedback for one parameter from one example."""

    example_id: str
    text: str


@dataclass
class CreditResult:
    """What a strategy produced for the optimizer, and what it cost to produce it."""

    strategy: str
    kind: str  # PER_PARAMETER, TRACE or SCORES
    feedback: dict[str, list[ParameterFeedback]] = field(default_factory=dict)  # parameter id -> feedback (with TRACE: examples left out of the trace)
    trace: str | None = None  # serialized trace (kind TRACE)
    scores: dict[str, float] = field(default_factory=dict)  # example id -> score
    details: dict[str, Any] = field(default_factory=dict)  # strategy-specific (e.g. which strategy adaptive chose)

    def for_parameter(self, param: Parameter) -> list[ParameterFeedback]:
        """Feedback addressed to `param`: a trace result addresses the whole trace to every parameter, followed by
        any per-parameter feedback it also carries (adaptive credit's fallback examples); scores otherwise."""
        if self.kind == PER_PARAMETER:
            return self.feedback.get(param.id, [])
        if self.kind == TRACE:
            items = ([ParameterFeedback("minibatch", self.trace)] if self.trace else []) + self.feedback.get(param.id, [])
            if items:
                return items
        return [ParameterFeedback(eid, f"The system scored {score:.2f} on this example.") for eid, score in self.scores.items()]


@runtime_checkable
class CreditAssigner(Protocol):
    """Turns the loss feedback on each example's graph into feedback for the trainable parameters."""

    name: str
    kind: str

    async def assign(self, traces: list[ExampleTrace], params: list[Parameter], engine: Engine) -> CreditResult: ...
