"""Adaptive credit: trace propagation for the examples whose trace fits a token budget, backprop for the rest."""
from __future__ import annotations

from credit.backprop import Backprop
from credit.semantic import SemanticBackprop
from credit.trace import TracePropagation, approx_tokens
from textgrad_core.checkpoint import malformed, object_state, restore_object
from textgrad_core.credit import TRACE, CreditResult, ExampleTrace
from textgrad_core.engines import Engine
from textgrad_core.errors import ConfigError
from textgrad_core.variable import Parameter

FALLBACKS = {"semantic": SemanticBackprop, "backprop": Backprop}


class AdaptiveCredit:
    """Trace propagation while the serialized trace fits `max_trace_tokens` (tokens ~ characters / 4), else backprop.

    The switch is made per example, not for the whole minibatch: one long agent loop should not deprive the short
    examples of the same batch of the joint trace. Examples are admitted into the trace smallest first (ties in batch
    order) while the whole trace, shared header included, stays within the budget; so the budget bounds what the
    optimizer is shown, not each example alone. The examples left out get per-parameter feedback from the fallback
    strategy (`semantic` or `backprop`), one call per edge as usual. The result has kind TRACE with `trace` holding
    the admitted examples (None when none fit) and `feedback` holding the fallback's per-parameter feedback;
    `CreditResult.for_parameter` returns both. `details["strategy_by_example"]` says which example used which.
    """

    name = "adaptive"
    kind = TRACE

    def __init__(self, max_trace_tokens: int = 6000, fallback: str = "semantic", value_limit: int | None = 400,
                 fallback_options: dict | None = None):
        if fallback not in FALLBACKS:
            raise ConfigError(f"adaptive credit: unknown fallback '{fallback}'; use one of: {', '.join(FALLBACKS)}.")
        self.max_trace_tokens = max_trace_tokens
        self.fallback_name = fallback
        self.trace = TracePropagation(value_limit=value_limit, prompt_token_budget=None)  # the budget admits examples
        try:
            self.fallback = FALLBACKS[fallback](**dict(fallback_options or {}))
        except TypeError as exc:
            raise ConfigError(f"adaptive credit: invalid fallback_options for '{fallback}': {exc}") from exc

    async def assign(self, traces: list[ExampleTrace], params: list[Parameter], engine: Engine) -> CreditResult:
        """Trace for the examples that fit the budget, fallback feedback for the others, both in one result."""
        sections = {t.example_id: self.trace.section(t, params) for t in traces}
        alone = {eid: approx_tokens(self.trace.render([s])) for eid, s in sections.items()}
        admitted: list[str] = []
        for eid in sorted(alone, key=lambda e: alone[e]):  # sorted() is stable: ties keep batch order
            candidate = [sections[e] for e in self._in_batch_order(traces, admitted + [eid])]
            if approx_tokens(self.trace.render(candidate)) <= self.max_trace_tokens:
                admitted.append(eid)
        in_trace = self._in_batch_order(traces, admitted)
        rest = [t for t in traces if t.example_id not in admitted]

        text = self.trace.render([sections[e] for e in in_trace]) if in_trace else None
        result = CreditResult(strategy=self.name, kind=self.kind, trace=text, scores={t.example_id: t.score for t in traces})
        fallback_details = {}
        if rest:
            fallback = await self.fallback.assign(rest, params, engine)
            result.feedback = fallback.feedback
            fallback_details = fallback.details
        shown = [sections[e] for e in in_trace]
        blocks = self.trace.parameter_blocks(shown)
        result.details = {
            "strategy_by_example": {t.example_id: "trace" if t.example_id in admitted else self.fallback_name for t in traces},
            "example_trace_tokens": alone,
            "max_trace_tokens": self.max_trace_tokens,
            "trace_chars": len(text) if text else 0,
            "trace_tokens": approx_tokens(text) if text else 0,
            "fallback": self.fallback_name,
            "fallback_details": fallback_details,
            "parameter_blocks": blocks,
            # as trace's: the whole PARAMETERS section, so an optimizer showing every parameter leaves it out
            "parameter_sections": {self.trace.parameters_section(shown): list(blocks)} if shown else {},
        }
        return result

    @staticmethod
    def _in_batch_order(traces: list[ExampleTrace], ids: list[str]) -> list[str]:
        wanted = set(ids)
        return [t.example_id for t in traces if t.example_id in wanted]

    def state_dict(self) -> dict:
        """The state of its two parts (trace and fallback strategy), as JSON, for a checkpoint; the switch keeps none."""
        return {"trace": object_state(self.trace), "fallback": object_state(self.fallback)}

    def load_state_dict(self, state: dict) -> None:
        """Put back what `state_dict` returned."""
        if not isinstance(state, dict) or set(state) != {"trace", "fallback"}:
            raise malformed(type(self).__name__, "expected the states of its trace and fallback parts")
        restore_object(self.trace, state["trace"])
        restore_object(self.fallback, state["fallback"])
