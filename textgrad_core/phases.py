"""Per-phase accounting of a run: calls, tokens, cost and wall time of forward, credit, optimizer, validation, test."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from textgrad_core.engines import UsageTotals
from textgrad_core.engines.accounting import Ledger
from textgrad_core.engines.context import call_context

PHASES = ("forward", "credit", "optimizer", "validation", "test")


@dataclass
class PhaseStats:
    """Calls, tokens, cost and wall time spent in one phase, summed over the run."""

    usage: UsageTotals = field(default_factory=UsageTotals)
    wall_s: float = 0.0

    def row(self) -> dict[str, Any]:
        u = self.usage
        return {"calls": u.calls - u.cache_hits, "cache_hits": u.cache_hits, "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens, "cost_usd": round(u.cost_usd, 6), "wall_s": round(self.wall_s, 3)}

    def state(self) -> dict[str, Any]:
        return {"usage": self.usage.model_dump(), "wall_s": self.wall_s}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "PhaseStats":
        return cls(UsageTotals.model_validate(state["usage"]), float(state["wall_s"]))


class PhaseClock:
    """Attributes every call and second to the phase it happened in; the phase also tags each call record."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.stats = {p: PhaseStats() for p in PHASES}

    @contextmanager
    def phase(self, name: str, **context: Any) -> Iterator[None]:
        """Attribute everything inside to `name`; `context` (split, step, ...) goes onto every call record."""
        before, start = self.ledger.total(), time.perf_counter()
        try:
            with call_context(phase=name, **context):
                yield
        finally:
            stats = self.stats[name]
            stats.usage = stats.usage.plus(self.ledger.total().minus(before))
            stats.wall_s += time.perf_counter() - start

    def rows(self) -> dict[str, dict[str, Any]]:
        return {name: stats.row() for name, stats in self.stats.items()}

    def state(self) -> dict[str, Any]:
        return {name: stats.state() for name, stats in self.stats.items()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.stats = {name: PhaseStats.from_state(state[name]) if name in state else PhaseStats() for name in PHASES}
