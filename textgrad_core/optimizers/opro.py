"""OPRO: propose new values from a meta-prompt of the best past values and their scores."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from textgrad_core import prompts
from textgrad_core.checkpoint import malformed
from textgrad_core.credit import PER_PARAMETER, SCORES, TRACE, CreditResult, mean_score
from textgrad_core.engines import Engine
from textgrad_core.optimizers.base import Proposal, ScriptStepping, UpdateEvent, rejected_reply, request_value, same_value
from textgrad_core.optimizers.budget import CHARS_PER_TOKEN, fit_texts
from textgrad_core.optimizers.kinds import contract, render_value
from textgrad_core.runlog import JsonlLog
from textgrad_core.variable import Parameter


@dataclass
class ScoredValues:
    """Values of all parameters that were run, and their mean minibatch score over every step that ran them."""

    values: dict[str, Any]
    score: float
    steps: list[int] = field(default_factory=list)


def _key(values: dict[str, Any]) -> str:
    """The history's key for a set of values: their canonical JSON."""
    return json.dumps(values, sort_keys=True, default=str)


class OPRO(ScriptStepping):
    """Optimization by PROmpting: one proposal per parameter per step, from the top-k scored values so far."""

    name = "opro"
    accepts = frozenset({PER_PARAMETER, TRACE, SCORES})  # it only uses the scores, which every credit kind carries

    def __init__(self, params: Any = None, top_k: int = 20, max_tokens: int = 2048, temperature: float = 1.0,
                 prompt_token_budget: int | None = 12000, *, engine: Engine | None = None):
        self._bind(params, engine)  # only a script's step() uses them; the trainer passes its own
        self.prompt_token_budget = prompt_token_budget  # tokens ~ characters / 4; past it, history values are cut
        self.top_k = top_k
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.history: dict[str, ScoredValues] = {}  # canonical JSON of the values -> their record

    def state_dict(self) -> dict[str, Any]:
        """The scored history as JSON, oldest first (its order breaks ties in `top`), for a checkpoint."""
        return {**self._stepping_state(),
                "history": [{"values": e.values, "score": e.score, "steps": list(e.steps)} for e in self.history.values()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` returned (a resumed run shows the same scored values in its prompts)."""
        self._load_stepping_state(state)
        saved = state.get("history")
        if not isinstance(saved, list):
            raise malformed(type(self).__name__, "history is not a list")
        history: dict[str, ScoredValues] = {}
        for i, e in enumerate(saved):
            if not (isinstance(e, dict) and set(e) == {"values", "score", "steps"} and isinstance(e["values"], dict)
                    and isinstance(e["score"], (int, float)) and not isinstance(e["score"], bool)
                    and isinstance(e["steps"], list) and all(type(s) is int for s in e["steps"])):
                raise malformed(type(self).__name__, f"history[{i}] is not (values, score, steps)")
            history[_key(e["values"])] = ScoredValues(dict(e["values"]), e["score"], list(e["steps"]))
        self.history = history

    def record(self, params: list[Parameter], credit: CreditResult, step: int) -> None:
        """Add the score of the current values (mean over the minibatch); once per step and values."""
        score = mean_score(credit.scores)  # over the scored examples: an unscored one is not a 0
        if score is None:
            return
        values = {p.id: p.value for p in params}
        key = _key(values)
        entry = self.history.get(key)
        if entry is None:
            self.history[key] = ScoredValues(values, score, [step])
        elif step not in entry.steps:  # a value run again on another minibatch: keep the running mean
            entry.score = (entry.score * len(entry.steps) + score) / (len(entry.steps) + 1)
            entry.steps.append(step)

    def top(self, param: Parameter) -> list[tuple[Any, float]]:
        """The top-k distinct values of `param` with their best score, sorted ascending (best last, as in OPRO)."""
        best: dict[str, tuple[Any, float]] = {}
        for entry in self.history.values():
            value = entry.values.get(param.id, param.value)
            key = json.dumps(value, default=str)
            if key not in best or entry.score > best[key][1]:
                best[key] = (value, entry.score)
        ranked = sorted(best.values(), key=lambda vs: vs[1], reverse=True)[: self.top_k]
        return sorted(ranked, key=lambda vs: vs[1])

    def prompt(self, param: Parameter) -> str:
        """The meta-prompt: constraints, the scored history (ascending) and the best value so far."""
        scored = self.top(param)
        best = render_value(param, scored[-1][0] if scored else param.value)  # shown whole: the value to improve on
        constraints = prompts.TGD_CONSTRAINTS.format(constraints="\n".join(f"- {c}" for c in param.constraints)) if param.constraints else ""
        terms = contract(param)
        kind_contract = prompts.TGD_CONTRACT.format(contract=terms) if terms else ""
        values = [render_value(param, v) for v, _ in scored]
        if self.prompt_token_budget is not None:  # the history shares what the rest of the prompt leaves
            rest = prompts.OPRO_USER.format(name=param.name, role=param.role, constraints=constraints, contract=kind_contract,
                                            history="", best=best, open=prompts.NEW_VALUE_OPEN, close=prompts.NEW_VALUE_CLOSE)
            values = fit_texts(values, self.prompt_token_budget * CHARS_PER_TOKEN - len(rest) - 40 * len(values))
        history = "\n".join(prompts.OPRO_HISTORY_ITEM.format(value=v, score=s) for v, (_, s) in zip(values, scored)) \
            or "(no scored values yet)"
        return prompts.OPRO_USER.format(name=param.name, role=param.role, constraints=constraints, contract=kind_contract,
                                        history=history, best=best, open=prompts.NEW_VALUE_OPEN, close=prompts.NEW_VALUE_CLOSE)

    async def propose(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                      events: JsonlLog | None = None, sample_index: int = 0,
                      temperature: float | None = None) -> Proposal:
        """Record the current score, then one proposal per parameter, concurrently; nothing is applied."""
        self.record(params, credit, step)
        temperature = self.temperature if temperature is None else temperature
        replies = await asyncio.gather(*(request_value(
            engine, p, prompts.OPRO_SYSTEM, self.prompt(p), tag=f"optimizer:{self.name}:{p.id}", max_tokens=self.max_tokens,
            temperature=temperature, sample_index=sample_index) for p in params))
        proposal = Proposal()
        for param, (value, error, attempt) in zip(params, replies):
            if value is None:
                proposal.unchanged.append(rejected_reply(self.name, param, step, error, events, sample_index))
            elif same_value(param.value, value):
                proposal.unchanged.append(UpdateEvent(param.id, False, param.version, reason="the optimizer proposed the current value"))
            else:
                proposal.values[param.id] = value
                proposal.reasons[param.id] = f"{self.name} proposal" + (" (after re-ask)" if attempt else "")
        return proposal
