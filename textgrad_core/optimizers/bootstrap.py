"""Bootstrap-demos (DSPy's BootstrapFewShot, as an optimizer step): the inputs and outputs of the training passes
that scored well become demos of every `demos` parameter.

Where the demos come from: a module that uses a demos parameter records what it saw on each TRAINING pass
(`textgrad_core.modules.recorder`; validation and test passes are never recorded); this optimizer keeps those of
the step's examples whose score reached `min_score` (the credit's scores), newest first, without repeating an
example, up to `max_demos`. Every new value goes through the parameter's validators (allowed ids: the training
split's), so a demo from another split can never be applied. No LLM call is made. Parameters of other kinds are
left as they are (an UpdateEvent says so), so it runs on every task.
"""
from __future__ import annotations

from typing import Any

from textgrad_core.credit import CreditResult
from textgrad_core.engines import Engine
from textgrad_core.modules.recorder import TRAIN_SPLIT, observations
from textgrad_core.optimizers.base import Proposal, ScriptStepping, UpdateEvent, same_value
from textgrad_core.runlog import JsonlLog
from textgrad_core.variable import Parameter


class BootstrapDemos(ScriptStepping):
    """Successful training traces become demos; no LLM call."""

    name = "bootstrap"
    accepts = frozenset({"per_parameter", "trace", "scores"})

    def __init__(self, params: Any = None, max_demos: int = 8, min_score: float = 1.0, *,
                 engine: Engine | None = None):
        self._bind(params, engine)
        if max_demos < 1:
            raise ValueError(f"bootstrap: max_demos must be >= 1, not {max_demos}.")
        self.max_demos = max_demos
        self.min_score = min_score

    def state_dict(self) -> dict[str, Any]:
        """What changes between steps, as JSON, for a checkpoint: only the count of script steps (no memory)."""
        return self._stepping_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` returned."""
        self._load_stepping_state(state)

    async def propose(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                      events: JsonlLog | None = None, sample_index: int = 0,
                      temperature: float | None = None) -> Proposal:
        """The new demo lists (nothing applied); the engine is never called."""
        proposal = Proposal()
        good = [eid for eid, score in credit.scores.items() if score is not None and score >= self.min_score]
        for param in params:
            if param.kind != "demos":
                proposal.unchanged.append(UpdateEvent(param.id, False, param.version,
                                                      reason=f"bootstrap changes demos parameters only ({param.kind})"))
                continue
            fresh = [o for o in observations(param, good) if o.split == TRAIN_SPLIT]
            if not fresh:
                proposal.unchanged.append(UpdateEvent(param.id, False, param.version,
                                                      reason="no successful training trace used this parameter"))
                continue
            new = [{"id": o.example_id, "input": str(o.input), "output": str(o.output)} for o in fresh]
            ids = {d["id"] for d in new}
            value = (new + [d for d in (param.value or []) if str(d.get("id")) not in ids])[: self.max_demos]
            rejected = param.rejection(value) if hasattr(param, "rejection") else None
            if rejected is not None:
                if events is not None:
                    events.write({"kind": "optimizer_value_rejected", "optimizer": self.name, "param": param.id,
                                  "step": step, "reason": str(rejected)})
                proposal.unchanged.append(UpdateEvent(param.id, False, param.version,
                                                      reason=f"rejected by a validator, kept v{param.version}: {rejected}"))
            elif same_value(param.value, value):
                proposal.unchanged.append(UpdateEvent(param.id, False, param.version, reason="no new demo"))
            else:
                proposal.values[param.id] = value
                proposal.reasons[param.id] = f"bootstrap: {len(fresh)} successful training trace(s) as demos"
        return proposal
