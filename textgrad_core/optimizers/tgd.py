"""Textual gradient descent (TGD): one update call per parameter, from its feedback, its constraints and a memory."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from textgrad_core import prompts
from textgrad_core.checkpoint import malformed
from textgrad_core.credit import CreditResult, ParameterFeedback
from textgrad_core.engines import Engine
from textgrad_core.optimizers.base import (Proposal, ScriptStepping, UpdateEvent, rejected_reply, render_feedback,
                                          request_value, same_value)
from textgrad_core.optimizers.budget import CHARS_PER_TOKEN, fit_texts
from textgrad_core.optimizers.context import example_contexts, without_shown_parameters
from textgrad_core.optimizers.kinds import contract, render_value
from textgrad_core.runlog import JsonlLog
from textgrad_core.variable import Parameter


@dataclass
class _PastUpdate:
    step: int
    value: str
    feedback: str


class TGD(ScriptStepping):
    """Textual gradient descent: one call per parameter, all parameters updated concurrently."""

    name = "tgd"
    accepts = frozenset({"per_parameter", "trace", "scores"})

    def __init__(self, params: Any = None, memory: int = 0, update_examples: list[str] | None = None,
                 max_tokens: int = 2048, temperature: float = 0.0, example_context: bool = False,
                 prompt_token_budget: int | None = 12000, *, engine: Engine | None = None):
        self._bind(params, engine)  # only a script's step() uses them; the trainer passes its own
        self.memory = memory  # how many past (value, feedback) pairs to show: the "momentum" of TextGrad
        self.update_examples = list(update_examples or [])
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.example_context = example_context  # show each feedback's example (input, system output) when credit has it
        # Tokens (~ characters / 4) of the whole user message; past it, feedback, example context and memory are cut
        # head and tail to a shared length. The current value is always shown whole: it is what gets rewritten.
        self.prompt_token_budget = prompt_token_budget
        self._past: dict[str, list[_PastUpdate]] = {}

    def state_dict(self) -> dict[str, Any]:
        """The memory of past (value, feedback) pairs per parameter, as JSON, for a checkpoint."""
        return {**self._stepping_state(),
                "past": {pid: [{"step": p.step, "value": p.value, "feedback": p.feedback} for p in past]
                         for pid, past in self._past.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` returned (a resumed run shows the same memory in its prompts)."""
        self._load_stepping_state(state)
        saved = state.get("past")
        if not isinstance(saved, dict):
            raise malformed(type(self).__name__, "past is not an object of parameter ids")
        past: dict[str, list[_PastUpdate]] = {}
        for pid, entries in saved.items():
            if not isinstance(entries, list) or not all(
                    isinstance(e, dict) and set(e) == {"step", "value", "feedback"} and type(e["step"]) is int
                    and isinstance(e["value"], str) and isinstance(e["feedback"], str) for e in entries):
                raise malformed(type(self).__name__, f"the memory of '{pid}' is not a list of (step, value, feedback)")
            past[pid] = [_PastUpdate(e["step"], e["value"], e["feedback"]) for e in entries]
        self._past = past

    async def propose(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                      events: JsonlLog | None = None, sample_index: int = 0,
                      temperature: float | None = None) -> Proposal:
        """One update call per parameter that received feedback, concurrently; nothing is applied."""
        todo = [(p, credit.for_parameter(p)) for p in params]
        todo = [(p, fb) for p, fb in todo if fb]
        results = await asyncio.gather(*(self._propose_one(p, fb, engine, step, events, sample_index, temperature, credit)
                                         for p, fb in todo))
        proposal = Proposal()
        for (param, _), (value, reason, event) in zip(todo, results):
            if event is not None:
                proposal.unchanged.append(event)
            else:
                proposal.values[param.id], proposal.reasons[param.id] = value, reason
        return proposal

    def past_updates(self, param: Parameter, step: int) -> list[_PastUpdate]:
        """The remembered (value, feedback) pairs of earlier steps shown in the prompt, oldest first."""
        if not self.memory:
            return []
        return [p for p in self._past.get(param.id, []) if p.step < step][-self.memory:]

    def prompt(self, param: Parameter, feedback: list[ParameterFeedback], step: int | None = None,
               credit: CreditResult | None = None) -> str:
        """The update prompt: the whole current value, role, constraints, the kind's contract, memory, examples, the
        context of each example the feedback came from, and the grouped feedback, within the token budget."""
        constraints = prompts.TGD_CONSTRAINTS.format(constraints="\n".join(f"- {c}" for c in param.constraints)) if param.constraints else ""
        terms = contract(param)
        kind_contract = prompts.TGD_CONTRACT.format(contract=terms) if terms else ""
        past = self.past_updates(param, step if step is not None else 1 << 62)
        # An example's input or output already in the prompt (a trace in the feedback, say) is not shown again.
        shown = {"the current value above": str(param.value), "the feedback below": "\n".join(f.text for f in feedback)}
        contexts = example_contexts(credit, [f.example_id for f in feedback], shown) if credit is not None and self.example_context else []
        if credit is not None:  # the trace's copy of this parameter's value would repeat CURRENT_VALUE
            feedback = [ParameterFeedback(f.example_id, without_shown_parameters(f.text, credit, [param])) for f in feedback]
        # Everything that may be cut, in one list, so one shared cap keeps the prompt within the budget.
        texts = [f.text for f in feedback] + [t for _, i, o in contexts for t in (i, o)] + \
                [t for p in past for t in (p.value, p.feedback)]

        def build(texts: list[str]) -> str:
            it = iter(texts)
            fb = [ParameterFeedback(f.example_id, next(it)) for f in feedback]
            ctx = [prompts.TGD_CONTEXT_ITEM.format(example_id=eid, input=next(it), output=next(it)) for eid, _, _ in contexts]
            mem = [f'<PAST_VALUE n="{n}">\n{next(it)}\n</PAST_VALUE>\n<PAST_FEEDBACK n="{n}">\n{next(it)}\n</PAST_FEEDBACK>'
                   for n, _ in enumerate(past, 1)]
            return prompts.TGD_USER.format(
                name=param.name, role=param.role, value=render_value(param), constraints=constraints, contract=kind_contract,
                memory=prompts.TGD_MEMORY.format(memory="\n".join(mem)) if mem else "",
                examples=prompts.TGD_EXAMPLES.format(examples="\n\n".join(self.update_examples)) if self.update_examples else "",
                context=prompts.TGD_CONTEXT.format(context="\n".join(ctx)) if ctx else "",
                feedback=render_feedback(fb), open=prompts.NEW_VALUE_OPEN, close=prompts.NEW_VALUE_CLOSE)

        text = build(texts)
        if self.prompt_token_budget is not None and len(text) > self.prompt_token_budget * CHARS_PER_TOKEN:
            fixed = len(text) - sum(map(len, texts))
            text = build(fit_texts(texts, self.prompt_token_budget * CHARS_PER_TOKEN - fixed - 50 * len(texts)))
        return text

    def _remember(self, param: Parameter, feedback: list[ParameterFeedback], step: int) -> None:
        # Once per (step, value): the n samples of a candidate search share one memory entry.
        past = self._past.setdefault(param.id, [])
        value = str(param.value)
        if not any(p.step == step and p.value == value for p in past):
            past.append(_PastUpdate(step, value, render_feedback(feedback)))

    async def _propose_one(self, param: Parameter, feedback: list[ParameterFeedback], engine: Engine, step: int,
                           events: JsonlLog | None, sample_index: int, temperature: float | None,
                           credit: CreditResult | None = None) -> tuple[Any, str, UpdateEvent | None]:
        user = self.prompt(param, feedback, step, credit)
        if self.memory:  # the value received this feedback whether or not the reply below is usable
            self._remember(param, feedback, step)
        value, error, attempt = await request_value(
            engine, param, prompts.TGD_SYSTEM, user, tag=f"optimizer:{self.name}:{param.id}", max_tokens=self.max_tokens,
            temperature=self.temperature if temperature is None else temperature, sample_index=sample_index)
        if value is None:
            return None, "", rejected_reply(self.name, param, step, error, events, sample_index)
        if same_value(param.value, value):
            return None, "", UpdateEvent(param.id, False, param.version, reason="the optimizer proposed the current value")
        return value, f"{self.name} update" + (" (after re-ask)" if attempt else ""), None
