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


@runtime_checkable
class Optimizer(Protocol):
    """Turns credit into new parameter values; never leaves a parameter in a broken state."""

    name: str
    accepts: frozenset[str]  # the credit kinds it can consume

    async def step(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                   events: JsonlLog | None = None) -> list[UpdateEvent]: ...


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


@dataclass
class _Memory:
    entries: list[tuple[str, str]] = field(default_factory=list)  # (value, feedback)


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
        self._memory: dict[str, _Memory] = {}

    async def step(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                   events: JsonlLog | None = None) -> list[UpdateEvent]:
        """Propose and apply a new value for every parameter that received feedback."""
        todo = [(p, credit.for_parameter(p)) for p in params]
        todo = [(p, fb) for p, fb in todo if fb]
        return list(await asyncio.gather(*(self._update(p, fb, engine, step, events) for p, fb in todo)))

    def prompt(self, param: Parameter, feedback: list[ParameterFeedback]) -> str:
        """The update prompt: the full current value, role, constraints, memory, examples and grouped feedback."""
        constraints = prompts.TGD_CONSTRAINTS.format(constraints="\n".join(f"- {c}" for c in param.constraints)) if param.constraints else ""
        memory = ""
        past = self._memory.get(param.id, _Memory()).entries[-self.memory:] if self.memory else []
        if past:
            memory = prompts.TGD_MEMORY.format(memory="\n".join(
                f'<PAST_VALUE n="{i}">\n{v}\n</PAST_VALUE>\n<PAST_FEEDBACK n="{i}">\n{f}\n</PAST_FEEDBACK>'
                for i, (v, f) in enumerate(past, 1)))
        examples = prompts.TGD_EXAMPLES.format(examples="\n\n".join(self.update_examples)) if self.update_examples else ""
        return prompts.TGD_USER.format(name=param.name, role=param.role, value=param.value, constraints=constraints,
                                       memory=memory, examples=examples, feedback=render_feedback(feedback),
                                       open=prompts.NEW_VALUE_OPEN, close=prompts.NEW_VALUE_CLOSE)

    async def _update(self, param: Parameter, feedback: list[ParameterFeedback], engine: Engine, step: int,
                      events: JsonlLog | None) -> UpdateEvent:
        old_version = param.version
        messages = [Message(role="system", content=prompts.TGD_SYSTEM), Message(role="user", content=self.prompt(param, feedback))]
        error = ""
        for attempt in range(2):  # the first try, and one re-ask that quotes the parse error
            request = LLMRequest(messages=tuple(messages), max_tokens=self.max_tokens, temperature=self.temperature,
                                 tag=f"optimizer:{self.name}:{param.id}")
            reply = await engine.acomplete(request)
            try:
                value = coerce_value(param, extract_delimited(reply.text))
            except ParseError as exc:
                error = str(exc)
                messages += [Message(role="assistant", content=reply.text), Message(role="user", content=prompts.REASK_PARSE.format(
                    error=error, open=prompts.NEW_VALUE_OPEN, close=prompts.NEW_VALUE_CLOSE))]
                continue
            if self.memory:
                self._memory.setdefault(param.id, _Memory()).entries.append((str(param.value), render_feedback(feedback)))
            if value == param.value:
                return UpdateEvent(param.id, False, old_version, reason="the optimizer proposed the current value")
            entry = param.update(value, step, reason=f"{self.name} update" + (" (after re-ask)" if attempt else ""))
            return UpdateEvent(param.id, True, old_version, entry.version, reason=entry.reason)
        reason = f"malformed optimizer reply, kept v{old_version}: {error}"
        if events is not None:
            events.write({"kind": "optimizer_reply_rejected", "optimizer": self.name, "param": param.id, "step": step,
                          "reason": error, "kept_version": old_version})
        return UpdateEvent(param.id, False, old_version, reason=reason)
