"""Outcome-only credit (OPRO-style): no intermediate credit, only the score of every example."""
from __future__ import annotations

from textgrad_core.checkpoint import expect_empty_state
from textgrad_core.credit import SCORES, CreditResult, ExampleTrace, mean_score
from textgrad_core.engines import Engine
from textgrad_core.variable import Parameter


class OutcomeCredit:
    """Scores per example and their mean over the scored ones (unscored examples are counted, never zeros); no feedback text, no intermediate or output values, zero engine calls."""

    name = "outcome"
    kind = SCORES

    async def assign(self, traces: list[ExampleTrace], params: list[Parameter], engine: Engine) -> CreditResult:
        """The score of each example of the minibatch."""
        scores = {t.example_id: t.score for t in traces}
        return CreditResult(strategy=self.name, kind=self.kind, scores=scores,
                            details={"mean_score": mean_score(scores), "examples": len(scores),
                                     "unscored": sum(s is None for s in scores.values())})

    def state_dict(self) -> dict:
        """Nothing changes between steps (its options come from the config): an empty state, for a checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Accept the empty state `state_dict` returns; anything else is a malformed checkpoint."""
        expect_empty_state(self, state)
