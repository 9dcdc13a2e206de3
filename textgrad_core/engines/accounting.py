"""Token and cost accounting per role and model, and the run budget."""
from __future__ import annotations

import re
import threading
from collections import defaultdict

from pydantic import BaseModel

from textgrad_core.engines.config import BudgetConfig, Price
from textgrad_core.engines.types import LLMReply, Usage
from textgrad_core.errors import BudgetExceeded

# USD per million tokens, list prices as published by the providers; extend or override with `pricing:` in config.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(input=2.50, output=10.00, cached_input=1.25),
    "gpt-4o-mini": Price(input=0.15, output=0.60, cached_input=0.075),
    "gpt-4.1": Price(input=2.00, output=8.00, cached_input=0.50),
    "gpt-4.1-mini": Price(input=0.40, output=1.60, cached_input=0.10),
    "gpt-3.5-turbo": Price(input=0.50, output=1.50),
    "claude-3-5-sonnet-latest": Price(input=3.00, output=15.00, cached_input=0.30),
    "claude-3-5-haiku-latest": Price(input=0.80, output=4.00, cached_input=0.08),
    "claude-sonnet-4-5": Price(input=3.00, output=15.00, cached_input=0.30),
    "claude-haiku-4-5": Price(input=1.00, output=5.00, cached_input=0.10),
}


FREE_PROVIDERS = ("sim", "scripted")

# Providers answer with dated snapshot names: gpt-4o-mini-2024-07-18, claude-haiku-4-5-20251001.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


class PriceTable:
    """Looks up a model's price; unknown models cost 0 and are reported as unpriced."""

    def __init__(self, extra: dict[str, Price | dict] | None = None):
        self.prices = dict(DEFAULT_PRICES)
        for name, price in (extra or {}).items():
            self.prices[name] = price if isinstance(price, Price) else Price.model_validate(dict(price))
        self.unpriced: set[str] = set()

    def lookup(self, model: str) -> Price | None:
        """The price of a model, or of the model family a dated snapshot name belongs to."""
        price = self.prices.get(model)
        if price is None and _SNAPSHOT_SUFFIX.search(model):
            family = _SNAPSHOT_SUFFIX.sub("", model)
            price = self.prices.get(family) or self.prices.get(family + "-latest")
        return price

    @staticmethod
    def is_free(provider: str) -> bool:
        """The simulator and scripted engines cost nothing (which is known, hence not 'unpriced')."""
        return provider in FREE_PROVIDERS

    def is_priced(self, provider: str, model: str) -> bool:
        """Whether a call to this model has a known cost (free providers do)."""
        return self.is_free(provider) or self.lookup(model) is not None

    def cost(self, provider: str, model: str, usage: Usage, requested: str | None = None) -> float:
        """USD cost of one call; `requested` (the configured model) prices a reply whose own model name is unknown."""
        if self.is_free(provider):
            return 0.0
        price = self.lookup(model) or (self.lookup(requested) if requested else None)
        if price is None:
            self.unpriced.add(model)
            return 0.0
        cached_price = price.cached_input if price.cached_input is not None else price.input
        fresh_input = max(usage.input_tokens - usage.cached_tokens, 0)
        return (fresh_input * price.input + usage.cached_tokens * cached_price + usage.output_tokens * price.output) / 1e6


class UsageTotals(BaseModel):
    """Aggregated usage of a set of calls."""

    calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    # Paid calls to a model missing from the price table: cost_usd leaves them out (see cost_label).
    unpriced_calls: int = 0

    def add_reply(self, reply: LLMReply) -> None:
        """Count one answered call (a cache hit adds no tokens and no cost)."""
        self.calls += 1
        self.cache_hits += int(reply.cache_hit)
        if not reply.cache_hit:
            self.input_tokens += reply.usage.input_tokens
            self.output_tokens += reply.usage.output_tokens
            self.cached_tokens += reply.usage.cached_tokens
            self.cost_usd += reply.cost_usd
            self.unpriced_calls += int(reply.unpriced)
        self.latency_s += reply.latency_s

    @property
    def unpriced(self) -> bool:
        """True when some paid call had no price, so cost_usd is a lower bound, not the cost."""
        return self.unpriced_calls > 0

    def cost_label(self) -> str:
        """The cost for a console or summary: '$0.0123', 'unpriced' (nothing priced), or '$0.0123 + unpriced'."""
        if not self.unpriced:
            return f"${self.cost_usd:.4f}"
        return "unpriced" if self.cost_usd == 0 else f"${self.cost_usd:.4f} + unpriced"

    def minus(self, other: "UsageTotals") -> "UsageTotals":
        """The usage between two snapshots."""
        return UsageTotals(**{k: getattr(self, k) - getattr(other, k) for k in UsageTotals.model_fields})

    def plus(self, other: "UsageTotals") -> "UsageTotals":
        return UsageTotals(**{k: getattr(self, k) + getattr(other, k) for k in UsageTotals.model_fields})

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Ledger:
    """Thread-safe usage ledger shared by every engine of a run, keyed by (role, provider, model)."""

    def __init__(self, budget: BudgetConfig | None = None, prices: PriceTable | None = None):
        self.budget = budget or BudgetConfig()
        self.prices = prices or PriceTable()
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str, str], UsageTotals] = defaultdict(UsageTotals)
        self._phases: dict[str, UsageTotals] = defaultdict(UsageTotals)
        self._faults: dict[str, dict[str, int]] = {"retries": defaultdict(int), "failed_calls": defaultdict(int)}
        self._reserved_calls = 0
        self._sum = UsageTotals()  # the running total of every row: `reserve` reads it on every call

    def reserve(self) -> None:
        """Admit one more call, or raise BudgetExceeded if the budget is used up."""
        with self._lock:
            total = self._sum
            b = self.budget
            if b.max_calls is not None and total.calls - total.cache_hits + self._reserved_calls >= b.max_calls:
                raise BudgetExceeded(f"Budget exhausted: max_calls={b.max_calls} LLM calls made. "
                                     "Raise budget.max_calls to continue; everything written so far is intact.")
            if b.max_tokens is not None and total.tokens >= b.max_tokens:
                raise BudgetExceeded(f"Budget exhausted: {total.tokens} tokens used (max_tokens={b.max_tokens}). "
                                     "Raise budget.max_tokens to continue; everything written so far is intact.")
            if b.max_cost_usd is not None and total.cost_usd >= b.max_cost_usd:
                raise BudgetExceeded(f"Budget exhausted: ${total.cost_usd:.4f} spent (max_cost_usd={b.max_cost_usd}). "
                                     "Raise budget.max_cost_usd to continue; everything written so far is intact.")
            self._reserved_calls += 1

    def release(self) -> None:
        with self._lock:
            self._reserved_calls -= 1

    def record(self, role: str, reply: LLMReply, phase: str | None = None) -> None:
        """Account one answered call to its role (and to the run phase it happened in, when known)."""
        with self._lock:
            self._rows[(role, reply.provider, reply.model)].add_reply(reply)
            self._sum.add_reply(reply)
            if phase is not None:
                self._phases[phase].add_reply(reply)

    def record_error(self, role: str, provider: str, model: str, phase: str | None = None) -> None:
        """Account one call that failed after its retries."""
        with self._lock:
            self._rows[(role, provider, model)].errors += 1
            self._sum.errors += 1
            if phase is not None:
                self._phases[phase].errors += 1

    def record_fault(self, kind: str, reason: str) -> None:
        """Count a retry (kind 'retries') or a call that failed for good (kind 'failed_calls') by its reason."""
        with self._lock:
            self._faults[kind][reason] += 1

    def faults(self) -> dict[str, dict[str, int]]:
        """{'retries': {reason: n}, 'failed_calls': {reason: n}}; reasons: 429 5xx 4xx timeout connection malformed empty."""
        with self._lock:
            return {kind: dict(sorted(counts.items())) for kind, counts in self._faults.items()}

    def by_phase(self) -> dict[str, UsageTotals]:
        """Usage per run phase (forward, credit, optimizer, validation, test), as set by `call_context(phase=...)`."""
        with self._lock:
            return {phase: row.model_copy() for phase, row in sorted(self._phases.items())}

    def unpriced_models(self) -> list[str]:
        """Models that answered paid calls without a price in the table."""
        return sorted(self.prices.unpriced)

    def cost_label(self) -> str:
        """The run's cost so far for a console or summary; 'unpriced' rather than a misleading $0.0000."""
        return self.total().cost_label()

    def _total_locked(self) -> UsageTotals:
        return self._sum.model_copy()

    def _resum_locked(self) -> None:
        total = UsageTotals()
        for row in self._rows.values():
            total = total.plus(row)
        self._sum = total

    def total(self) -> UsageTotals:
        """Usage of every call so far."""
        with self._lock:
            return self._total_locked()

    def by_role(self) -> dict[str, UsageTotals]:
        """Usage per role (forward, credit, optimizer, ...)."""
        with self._lock:
            out: dict[str, UsageTotals] = defaultdict(UsageTotals)
            for (role, _, _), row in self._rows.items():
                out[role] = out[role].plus(row)
            return dict(out)

    def rows(self) -> list[dict]:
        """One row per (role, provider, model), for summaries."""
        with self._lock:
            return [dict(role=r, provider=p, model=m, **row.model_dump()) for (r, p, m), row in sorted(self._rows.items())]

    def state(self) -> dict:
        """Everything counted so far, for a checkpoint (a resumed run goes on counting from here)."""
        with self._lock:
            return {"rows": [[r, p, m, row.model_dump()] for (r, p, m), row in sorted(self._rows.items())],
                    "phases": {k: v.model_dump() for k, v in self._phases.items()},
                    "faults": {k: dict(v) for k, v in self._faults.items()}}

    def load_state(self, state: dict) -> None:
        """Put back what `state()` saved."""
        with self._lock:
            self._rows = defaultdict(UsageTotals, {(r, p, m): UsageTotals.model_validate(row)
                                                   for r, p, m, row in state["rows"]})
            self._phases = defaultdict(UsageTotals, {k: UsageTotals.model_validate(v)
                                                     for k, v in state.get("phases", {}).items()})
            for kind, counts in state.get("faults", {}).items():
                self._faults[kind] = defaultdict(int, counts)
            self._resum_locked()
