"""The optimizer protocol and textual gradient descent (TGD): parameter feedback in, new parameter values out."""
from __future__ import annotations

import ast
import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from textgrad_core import prompts
from textgrad_core.credit import CreditResult, ParameterFeedback
from textgrad_core.engines import Engine, LLMRequest, Message
from textgrad_core.errors import ParseError
from textgrad_core.runlog import JsonlLog
from textgrad_core.variable import Parameter


@dataclass
class UpdateEvent:
    """What happened to one parameter in one optimizer step."""

    param_id: str
    accepted: bool
    old_version: int
    new_version: int | None = None
    reason: str = ""


@dataclass
class Proposal:
    """New values an optimizer proposes for some parameters, not yet applied to them."""

    values: dict[str, Any] = field(default_factory=dict)  # parameter id -> proposed value (changes only)
    reasons: dict[str, str] = field(default_factory=dict)  # parameter id -> why, for the version history
    unchanged: list[UpdateEvent] = field(default_factory=list)  # parameters left as they are, and why


@runtime_checkable
class Optimizer(Protocol):
    """Turns credit into new parameter values; never leaves a parameter in a broken state."""

    name: str
    accepts: frozenset[str]  # the credit kinds it can consume

    async def step(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                   events: JsonlLog | None = None) -> list[UpdateEvent]: ...


@runtime_checkable
class ProposingOptimizer(Optimizer, Protocol):
    """An optimizer that can also propose values without applying them (what candidate search needs).

    `sample_index` and `temperature` make the n proposals of one step n distinct requests (and cache entries).
    Proposing reads the parameters' current values and never changes them.
    """

    async def propose(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                      events: JsonlLog | None = None, sample_index: int = 0,
                      temperature: float | None = None) -> Proposal: ...


def apply_proposal(params: list[Parameter], proposal: Proposal, step: int) -> list[UpdateEvent]:
    """Apply a proposal through Parameter.update (so every change is a new version) and report each parameter."""
    events = list(proposal.unchanged)
    for param in params:
        if param.id in proposal.values:
            old_version = param.version
            entry = param.update(proposal.values[param.id], step, reason=proposal.reasons.get(param.id, "update"))
            events.append(UpdateEvent(param.id, True, old_version, entry.version, reason=entry.reason))
    return events


def extract_delimited(text: str, open_tag: str = prompts.NEW_VALUE_OPEN, close_tag: str = prompts.NEW_VALUE_CLOSE) -> str:
    """The text between the last opening delimiter and the closing one after it."""
    start = text.rfind(open_tag)
    if start < 0:
        raise ParseError(f"the reply has no {open_tag} delimiter")
    end = text.find(close_tag, start)
    if end < 0:
        raise ParseError(f"the reply has {open_tag} but no closing {close_tag}")
    value = text[start + len(open_tag):end].strip("\n")
    if not value.strip():
        raise ParseError(f"the value between {open_tag} and {close_tag} is empty")
    return value


def coerce_value(param: Parameter, value: Any) -> Any:
    """Check and convert a proposed value for the parameter's kind: numbers must parse, code must compile."""
    if param.kind == "number":
        if isinstance(value, bool):
            raise ParseError(f"'{param.id}' is a number, got a boolean")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParseError(f"'{param.id}' is a number, got {str(value)[:80]!r}") from None
        return int(number) if isinstance(param.value, int) and number.is_integer() else number
    if not isinstance(value, str):
        raise ParseError(f"'{param.id}' is {param.kind}, got a {type(value).__name__}")
    if param.kind == "code":
        try:
            ast.parse(value)
        except SyntaxError as exc:
            raise ParseError(f"the new code for '{param.id}' does not parse: {exc.msg} (line {exc.lineno})") from None
    return value


def render_feedback(items: list[ParameterFeedback]) -> str:
    """Feedback grouped by example id."""
    if not items:
        return "(no feedback)"
    grouped: dict[str, list[str]] = {}
    for item in items:
        grouped.setdefault(item.example_id, []).append(item.text)
    return "\n".join(f'<EXAMPLE id="{eid}">\n' + "\n".join(texts) + "\n</EXAMPLE>" for eid, texts in grouped.items())


async def request_value(engine: Engine, param: Parameter, system: str, user: str, *, tag: str, max_tokens: int,
                        temperature: float, sample_index: int = 0) -> tuple[Any | None, str, int]:
    """Ask for a new value between the NEW_VALUE delimiters; re-ask once quoting the parse error.

    Returns (value or None, the last error, the attempt that succeeded).
    """
    messages = [Message(role="system", content=system), Message(role="user", content=user)]
    error = ""
    for attempt in range(2):  # the first try, and one re-ask that quotes the parse error
        request = LLMRequest(messages=tuple(messages), max_tokens=max_tokens, temperature=temperature,
                             sample_index=sample_index, tag=tag)
        reply = await engine.acomplete(request)
        try:
            return coerce_value(param, extract_delimited(reply.text)), "", attempt
        except ParseError as exc:
            error = str(exc)
            messages += [Message(role="assistant", content=reply.text), Message(role="user", content=prompts.REASK_PARSE.format(
                error=error, open=prompts.NEW_VALUE_OPEN, close=prompts.NEW_VALUE_CLOSE))]
    return None, error, 2


def rejected_reply(optimizer: str, param: Parameter, step: int, error: str, events: JsonlLog | None,
                   sample_index: int = 0) -> UpdateEvent:
    """Log a reply that stayed malformed after the re-ask; the parameter keeps its value."""
    if events is not None:
        events.write({"kind": "optimizer_reply_rejected", "optimizer": optimizer, "param": param.id, "step": step,
                      "sample_index": sample_index, "reason": error, "kept_version": param.version})
    return UpdateEvent(param.id, False, param.version, reason=f"malformed optimizer reply, kept v{param.version}: {error}")


@dataclass
class _PastUpdate:
    step: int
    value: str
    feedback: str


class TGD:
    """Textual gradient descent: one call per parameter, all parameters updated concurrently."""

    name = "tgd"
    accepts = frozenset({"per_parameter", "trace", "scores"})

    def __init__(self, memory: int = 0, update_examples: list[str] | None = None, max_tokens: int = 2048,
                 temperature: float = 0.0):
        self.memory = memory  # how many past (value, feedback) pairs to show: the "momentum" of TextGrad
        self.update_examples = list(update_examples or [])
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._past: dict[str, list[_PastUpdate]] = {}

    async def step(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                   events: JsonlLog | None = None) -> list[UpdateEvent]:
        """Propose and apply a new value for every parameter that received feedback."""
        return apply_proposal(params, await self.propose(params, credit, engine, step, events), step)

    async def propose(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                      events: JsonlLog | None = None, sample_index: int = 0,
                      temperature: float | None = None) -> Proposal:
        """One update call per parameter that received feedback, concurrently; nothing is applied."""
        todo = [(p, credit.for_parameter(p)) for p in params]
        todo = [(p, fb) for p, fb in todo if fb]
        results = await asyncio.gather(*(self._propose_one(p, fb, engine, step, events, sample_index, temperature)
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

    def prompt(self, param: Parameter, feedback: list[ParameterFeedback], step: int | None = None) -> str:
        """The update prompt: the full current value, role, constraints, memory, examples and grouped feedback."""
        constraints = prompts.TGD_CONSTRAINTS.format(constraints="\n".join(f"- {c}" for c in param.constraints)) if param.constraints else ""
        memory = ""
        past = self.past_updates(param, step if step is not None else 1 << 62)
        if past:
            memory = prompts.TGD_MEMORY.format(memory="\n".join(
                f'<PAST_VALUE n="{i}">\n{p.value}\n</PAST_VALUE>\n<PAST_FEEDBACK n="{i}">\n{p.feedback}\n</PAST_FEEDBACK>'
                for i, p in enumerate(past, 1)))
        examples = prompts.TGD_EXAMPLES.format(examples="\n\n".join(self.update_examples)) if self.update_examples else ""
        return prompts.TGD_USER.format(name=param.name, role=param.role, value=param.value, constraints=constraints,
                                       memory=memory, examples=examples, feedback=render_feedback(feedback),
                                       open=prompts.NEW_VALUE_OPEN, close=prompts.NEW_VALUE_CLOSE)

    def _remember(self, param: Parameter, feedback: list[ParameterFeedback], step: int) -> None:
        # Once per (step, value): the n samples of a candidate search share one memory entry.
        past = self._past.setdefault(param.id, [])
        value = str(param.value)
        if not any(p.step == step and p.value == value for p in past):
            past.append(_PastUpdate(step, value, render_feedback(feedback)))

    async def _propose_one(self, param: Parameter, feedback: list[ParameterFeedback], engine: Engine, step: int,
                           events: JsonlLog | None, sample_index: int,
                           temperature: float | None) -> tuple[Any, str, UpdateEvent | None]:
        user = self.prompt(param, feedback, step)
        if self.memory:  # the value received this feedback whether or not the reply below is usable
            self._remember(param, feedback, step)
        value, error, attempt = await request_value(
            engine, param, prompts.TGD_SYSTEM, user, tag=f"optimizer:{self.name}:{param.id}", max_tokens=self.max_tokens,
            temperature=self.temperature if temperature is None else temperature, sample_index=sample_index)
        if value is None:
            return None, "", rejected_reply(self.name, param, step, error, events, sample_index)
        if value == param.value:
            return None, "", UpdateEvent(param.id, False, param.version, reason="the optimizer proposed the current value")
        return value, f"{self.name} update" + (" (after re-ask)" if attempt else ""), None
