"""Static analysis (the survey's baseline to dynamic analysis): propose parameter values from the system's
structure and a few training inputs, WITHOUT its outputs, scores or feedback, and without running it.

What it reads for each parameter: its role, kind, constraints and value; the module that declared it (its
description and the source of its `acall`, recorded when the module made the parameter, before any run); and up to
`inputs` training inputs that module received (inputs only: never the outputs). The credit it is handed is ignored
on purpose. It makes one optimizer call per text, code or number parameter and no forward call; `demos` and
`choice` parameters are left as they are. Replies go through the usual parsing, re-ask and validators.
"""
from __future__ import annotations

import asyncio
from typing import Any

from textgrad_core import prompts as core_prompts
from textgrad_core.credit import CreditResult
from textgrad_core.engines import Engine
from textgrad_core.modules import prompts
from textgrad_core.modules.recorder import declaration, observations
from textgrad_core.optimizers.base import Proposal, ScriptStepping, UpdateEvent, rejected_reply, request_value, same_value
from textgrad_core.runlog import JsonlLog
from textgrad_core.variable import Parameter

STATIC_KINDS = ("text", "code", "number")


class StaticAnalysis(ScriptStepping):
    """One proposal per parameter from structure and inputs alone."""

    name = "static"
    accepts = frozenset({"per_parameter", "trace", "scores"})

    def __init__(self, params: Any = None, inputs: int = 3, source_chars: int = 4000, max_tokens: int = 2048,
                 temperature: float = 0.0, *, engine: Engine | None = None):
        self._bind(params, engine)
        self.inputs, self.source_chars = inputs, source_chars
        self.max_tokens, self.temperature = max_tokens, temperature

    def state_dict(self) -> dict[str, Any]:
        """What changes between steps, as JSON, for a checkpoint: only the count of script steps (no memory)."""
        return self._stepping_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` returned."""
        self._load_stepping_state(state)

    async def propose(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                      events: JsonlLog | None = None, sample_index: int = 0,
                      temperature: float | None = None) -> Proposal:
        """One optimizer call per eligible parameter, concurrently; the credit is not read."""
        proposal = Proposal()
        todo = [p for p in params if p.kind in STATIC_KINDS]
        for p in params:
            if p.kind not in STATIC_KINDS:
                proposal.unchanged.append(UpdateEvent(p.id, False, p.version,
                                                      reason=f"static analysis leaves {p.kind} parameters as they are"))
        temp = self.temperature if temperature is None else temperature
        results = await asyncio.gather(*(request_value(
            engine, p, prompts.STATIC_SYSTEM.format(open=core_prompts.NEW_VALUE_OPEN, close=core_prompts.NEW_VALUE_CLOSE),
            self.prompt(p), tag=f"optimizer:{self.name}:{p.id}", max_tokens=self.max_tokens, temperature=temp,
            sample_index=sample_index) for p in todo))
        for param, (value, error, attempt) in zip(todo, results):
            if value is None:
                proposal.unchanged.append(rejected_reply(self.name, param, step, error, events, sample_index))
                continue
            rejected = param.rejection(value) if hasattr(param, "rejection") else None
            if rejected is not None:
                proposal.unchanged.append(UpdateEvent(param.id, False, param.version,
                                                      reason=f"rejected by a validator, kept v{param.version}: {rejected}"))
            elif same_value(param.value, value):
                proposal.unchanged.append(UpdateEvent(param.id, False, param.version,
                                                      reason="the optimizer proposed the current value"))
            else:
                proposal.values[param.id] = value
                proposal.reasons[param.id] = "static analysis" + (" (after re-ask)" if attempt else "")
        return proposal

    def prompt(self, param: Parameter) -> str:
        """The prompt for one parameter: its declaration, the declaring module's structure and training inputs."""
        declared = declaration(param)
        if declared is None:
            structure = ("No module declared this parameter: only its role tells how the system uses it.")
        else:
            source = declared.source[: self.source_chars]
            structure = f"Used by {declared.module}.\n\n{declared.description}\n\nSource:\n{source}"
        seen = observations(param)[: self.inputs]
        inputs = "\n".join(f'<INPUT n="{i}">\n{o.input}\n</INPUT>' for i, o in enumerate(seen, 1)) or "(none recorded)"
        constraints = "".join(f"Constraint: {c}\n" for c in param.constraints)
        return prompts.STATIC_USER.format(name=param.name, kind=param.kind, role=param.role, constraints=constraints,
                                          value=param.value, structure=structure, inputs=inputs)
