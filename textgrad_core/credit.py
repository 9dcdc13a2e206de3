"""The credit-assignment protocol: from feedback on outputs to feedback for each trainable parameter."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from textgrad_core.engines import Engine
from textgrad_core.errors import ConfigError
from textgrad_core.graph import Graph, canonicalize_ids
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
    def score(self) -> float | None:
        """The loss's score, or None when the loss is unscored (e.g. a judge that gave no score)."""
        return self.loss.score

    @property
    def scored(self) -> bool:
        return self.loss.score is not None


def loss_output(loss: Variable) -> Variable:
    """The system output a loss evaluated: its op's `prediction` input (else its last input; else the loss itself)."""
    if loss.op is None or not loss.op.inputs:
        return loss
    return next((v for f, v in loss.op.inputs if f == "prediction"), loss.op.inputs[-1][1])


def traces_from_losses(losses: list[Variable], example_ids: list[str] | None = None) -> list[ExampleTrace]:
    """One ExampleTrace per loss, walked from the loss through the recorded ops, with canonical ids.

    Example ids: `example_ids` when given, else the example of the tape the loss was recorded on, else its position
    in `losses` ("0", "1", ...). Ids of variables are renumbered by `canonicalize_ids` first, so no prompt built from
    these traces depends on process history.
    """
    if example_ids is not None and len(example_ids) != len(losses):
        raise ConfigError(f"example_ids has {len(example_ids)} ids for {len(losses)} losses: give one id per loss.")
    ids = list(example_ids) if example_ids is not None else [l.example_id or str(i) for i, l in enumerate(losses)]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"Two losses belong to the same example id ({sorted(i for i in ids if ids.count(i) > 1)[0]!r}): "
                          "pass example_ids=[...] with one distinct id per loss.")
    canonicalize_ids(losses)
    return [ExampleTrace(eid, loss_output(loss), loss, Graph.from_output(loss)) for eid, loss in zip(ids, losses)]


def canonical_traces(traces: list[ExampleTrace]) -> list[ExampleTrace]:
    """The same traces with canonical variable ids and graphs rebuilt from each loss (what every prompt should see)."""
    canonicalize_ids([t.loss for t in traces])
    return [ExampleTrace(t.example_id, t.output, t.loss, Graph.from_output(t.loss)) for t in traces]


def score_text(score: float | None) -> str:
    """A score as prompts show it: '0.75', or 'unscored' when the loss carries no score."""
    return "unscored" if score is None else f"{score:g}"


def mean_score(scores: dict[str, float | None]) -> float | None:
    """Mean over the scored examples only; None when none is scored."""
    values = [s for s in scores.values() if s is not None]
    return sum(values) / len(values) if values else None


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
    scores: dict[str, float | None] = field(default_factory=dict)  # example id -> score (None: unscored)
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
        return [ParameterFeedback(eid, "The evaluation gave no score on this example." if score is None
                                  else f"The system scored {score:.2f} on this example.")
                for eid, score in self.scores.items()]

    @property
    def unscored(self) -> list[str]:
        """Ids of the examples whose loss carried no score."""
        return [eid for eid, s in self.scores.items() if s is None]

    @staticmethod
    def merge(results: list["CreditResult"]) -> "CreditResult":
        """One result from several (e.g. two backward() calls before one step): feedback, traces and scores joined."""
        if len(results) == 1:
            return results[0]
        kinds = {r.kind for r in results}
        if len(kinds) > 1:
            raise ConfigError(f"Cannot combine credit of kinds {sorted(kinds)} in one step: use one credit strategy "
                              "between two optimizer steps (or call zero_grad()).")
        merged = CreditResult(strategy="+".join(dict.fromkeys(r.strategy for r in results)), kind=results[0].kind)
        for r in results:
            for pid, items in r.feedback.items():
                merged.feedback.setdefault(pid, []).extend(items)
            merged.scores.update(r.scores)
        traces = [r.trace for r in results if r.trace]
        merged.trace = "\n".join(traces) if traces else None
        merged.details = {"merged": [r.details for r in results]}
        return merged


@runtime_checkable
class CreditAssigner(Protocol):
    """Turns the loss feedback on each example's graph into feedback for the trainable parameters."""

    name: str
    kind: str

    async def assign(self, traces: list[ExampleTrace], params: list[Parameter], engine: Engine) -> CreditResult: ...
