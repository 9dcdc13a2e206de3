"""Joint update (OptoPrime-style): one call sees every trainable parameter and the trace, and returns JSON updates."""
from __future__ import annotations

import json
from typing import Any

from textgrad_core import prompts
from textgrad_core.credit import PER_PARAMETER, TRACE, CreditResult
from textgrad_core.engines import Engine, LLMReply, LLMRequest, Message, ResponseFormat
from textgrad_core.engines.base import parse_json_reply
from textgrad_core.errors import ParseError
from textgrad_core.optimizers.base import Proposal, ScriptStepping, UpdateEvent, coerce_value, render_feedback
from textgrad_core.optimizers.budget import CHARS_PER_TOKEN, approx_tokens, clip_middle
from textgrad_core.optimizers.context import without_shown_parameters
from textgrad_core.optimizers.kinds import contract, json_schema
from textgrad_core.validators import _preview
from textgrad_core.runlog import JsonlLog
from textgrad_core.variable import Parameter



def parameters_json(params: list[Parameter]) -> str:
    """The parameters as the prompt shows them: {id: {kind, role, value, constraints}}, plus `choices` for a choice
    and `contract` (the kind's and validators' requirements) where there is one."""
    shown: dict[str, Any] = {}
    for p in params:
        entry: dict[str, Any] = {"kind": p.kind, "role": p.role, "value": p.value, "constraints": list(p.constraints)}
        if p.kind == "choice":
            entry["choices"] = list(p.choices or [])
        terms = [line.removeprefix("- ") for line in contract(p).splitlines()]
        if terms:
            entry["contract"] = terms
        shown[p.id] = entry
    return json.dumps(shown, ensure_ascii=False, indent=2, default=str)


def reply_schema(params: list[Parameter]) -> dict[str, Any]:
    """The JSON schema of a reply: reasoning, and updates keyed by the known parameter ids with their types."""
    return {"type": "object", "additionalProperties": False, "required": ["reasoning", "updates"],
            "properties": {"reasoning": {"type": "string"},
                           "updates": {"type": "object", "additionalProperties": False,
                                       "properties": {p.id: json_schema(p) for p in params}}}}


def decode_reply(reply: LLMReply) -> Any:
    """The reply's JSON object: the engine's parse, else the text (also when prose surrounds the object)."""
    if reply.parsed is not None:
        return reply.parsed
    decoded = parse_json_reply(reply.text)
    if decoded is None and "{" in reply.text:
        decoded = parse_json_reply(reply.text[reply.text.find("{"): reply.text.rfind("}") + 1])
    return decoded


def check_updates(decoded: Any, params: list[Parameter]) -> tuple[dict[str, Any], list[str]]:
    """Validated new values (parameter id -> value, changes only) and every error found; any error voids them all."""
    if not isinstance(decoded, dict) or not isinstance(decoded.get("updates"), dict):
        return {}, ['the reply is not a JSON object with an "updates" object']
    by_id = {p.id: p for p in params}
    values: dict[str, Any] = {}
    errors: list[str] = []
    for pid, raw in decoded["updates"].items():
        param = by_id.get(pid)
        if param is None:
            errors.append(f"unknown parameter id {_preview(pid)} (valid ids: {', '.join(by_id)})")
            continue
        if param.kind == "number" and (isinstance(raw, bool) or not isinstance(raw, (int, float))):
            errors.append(f"'{pid}' is a number parameter; give a JSON number, not {_preview(raw)}")
            continue
        try:
            value = coerce_value(param, raw)
        except ParseError as exc:
            errors.append(str(exc))
            continue
        if isinstance(value, str) and not value.strip():
            errors.append(f"the new value of '{pid}' is empty")
        elif value != param.value:
            values[pid] = value
    return values, errors


def feedback_text(credit: CreditResult, params: list[Parameter]) -> tuple[str, str]:
    """(intro, feedback) for the prompt: the trace when there is one, else the feedback grouped by parameter."""
    parts = [f'<PARAMETER id="{p.id}">\n{render_feedback(credit.feedback[p.id])}\n</PARAMETER>'
             for p in params if credit.feedback.get(p.id)]
    if credit.kind == TRACE:
        # An adaptive result carries the trace of the examples that fit plus per-parameter feedback for the rest.
        return prompts.JOINT_FEEDBACK_TRACE, "\n".join([credit.trace or ""] + parts).strip()
    if credit.kind == PER_PARAMETER:
        return prompts.JOINT_FEEDBACK_PER_PARAMETER, "\n".join(parts)
    return prompts.JOINT_FEEDBACK_TRACE, "\n".join(
        f"Example {eid}: " + ("unscored" if s is None else f"score {s:.3f}") for eid, s in credit.scores.items())


class JointUpdate(ScriptStepping):
    """One call updates all trainable parameters from the execution trace; the reply is validated as a whole."""

    name = "joint"
    accepts = frozenset({TRACE})

    def __init__(self, params: Any = None, max_tokens: int = 4096, temperature: float = 0.0,
                 prompt_token_budget: int | None = 16000, *, engine: Engine | None = None):
        self._bind(params, engine)  # only a script's step() uses them; the trainer passes its own
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.prompt_token_budget = prompt_token_budget  # tokens ~ characters / 4; the trace is cut head and tail past it

    def state_dict(self) -> dict[str, Any]:
        """What changes between steps, as JSON, for a checkpoint: only the count of script steps (no memory)."""
        return self._stepping_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` returned."""
        self._load_stepping_state(state)

    def prompt(self, params: list[Parameter], credit: CreditResult) -> str:
        """The user message: the parameters as JSON and the trace (or feedback), between the simulator's markers."""
        intro, feedback = feedback_text(credit, params)
        # The JSON holds every value the optimizer rewrites; the trace's copy of each is replaced by a reference.
        feedback = without_shown_parameters(feedback, credit, params)
        parameters = parameters_json(params)
        if self.prompt_token_budget is not None:
            rest = prompts.JOINT_USER.format(parameters=parameters, feedback_intro=intro, feedback="",
                                             ids=", ".join(p.id for p in params))
            room = self.prompt_token_budget * CHARS_PER_TOKEN - len(rest)
            if approx_tokens(feedback) + approx_tokens(rest) > self.prompt_token_budget:
                feedback = clip_middle(feedback, max(room, 400))
        return prompts.JOINT_USER.format(parameters=parameters, feedback_intro=intro, feedback=feedback,
                                         ids=", ".join(p.id for p in params))

    async def propose(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                      events: JsonlLog | None = None, sample_index: int = 0,
                      temperature: float | None = None) -> Proposal:
        """One call (plus one re-ask quoting the errors when the reply is invalid); nothing is applied."""
        if not params or not feedback_text(credit, params)[1].strip():
            return Proposal()
        messages = [Message(role="system", content=prompts.JOINT_SYSTEM), Message(role="user", content=self.prompt(params, credit))]
        fmt = ResponseFormat(type="json_schema", name="joint_update", json_schema=reply_schema(params))
        errors: list[str] = []
        for attempt in range(2):  # the first try, and one re-ask that quotes every error
            reply = await engine.acomplete(LLMRequest(
                messages=tuple(messages), max_tokens=self.max_tokens, response_format=fmt, sample_index=sample_index,
                temperature=self.temperature if temperature is None else temperature, tag=f"optimizer:{self.name}"))
            values, errors = check_updates(decode_reply(reply), params)
            if not errors:
                reason = f"{self.name} update" + (" (after re-ask)" if attempt else "")
                return Proposal(values=values, reasons={pid: reason for pid in values},
                                unchanged=[] if values else [UpdateEvent(p.id, False, p.version, reason="the optimizer proposed no change")
                                                             for p in params])
            messages += [Message(role="assistant", content=reply.text),
                         Message(role="user", content=prompts.REASK_JOINT.format(
                             errors="\n".join(f"- {e}" for e in errors), ids=", ".join(p.id for p in params)))]
        reason = "; ".join(errors)
        if events is not None:
            events.write({"kind": "optimizer_reply_rejected", "optimizer": self.name, "param": "*", "step": step,
                          "sample_index": sample_index, "reason": reason, "errors": errors,
                          "kept_versions": {p.id: p.version for p in params}})
        return Proposal(unchanged=[UpdateEvent(p.id, False, p.version, reason=f"malformed joint reply, kept v{p.version}: {reason}")
                                   for p in params])
