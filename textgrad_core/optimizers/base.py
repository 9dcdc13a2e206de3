"""The optimizer protocol and what every optimizer shares: proposals, applying them, parsing and rejecting replies."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from textgrad_core import prompts
from textgrad_core.checkpoint import malformed
from textgrad_core.credit import CreditResult, ParameterFeedback
from textgrad_core.engines import Engine, LLMRequest, Message, run_sync
from textgrad_core.errors import ConfigError, ParseError
from textgrad_core.optimizers.kinds import coerce_value
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


class ScriptStepping:
    """What the built-in optimizers share: the trainer's async protocol and a script's `step()` after backward().

    Two ways to call `step`:
    - the protocol (trainer, candidate search): `await opt.step(params, credit, engine, step, events=...)` applies the
      given credit and returns the UpdateEvents; it is `update(...)` under the protocol's name;
    - a script: `opt = TGD(params, engine=eng); tc.backward(losses, engine=eng); opt.step()` consumes the credit that
      backward() left on the optimizer's parameters (several backward() calls are merged), counts the step, clears
      that credit and returns the UpdateEvents; `await opt.astep()` is its async twin.
    """

    name: str
    accepts: frozenset[str]

    def _bind(self, params: Any = None, engine: Engine | None = None) -> None:
        """Remember the parameters and engine a script's `step()` uses."""
        if isinstance(params, Parameter):
            params = [params]
        self.params: list[Parameter] = list(params) if params is not None else []
        self.engine = engine
        self.steps_taken = 0

    async def update(self, params: list[Parameter], credit: CreditResult, engine: Engine, step: int,
                     events: JsonlLog | None = None) -> list[UpdateEvent]:
        """Propose new values from `credit` and apply them (each change a new version)."""
        return apply_proposal(params, await self.propose(params, credit, engine, step, events), step)

    def step(self, params: list[Parameter] | None = None, credit: CreditResult | None = None, engine: Engine | None = None,
             step: int | None = None, events: JsonlLog | None = None) -> Any:
        """With `credit`: the async protocol (returns an awaitable). Without: the synchronous script step."""
        if credit is not None:
            if params is None or step is None:
                raise ConfigError(f"{self.name}.step(params, credit, engine, step): give all four, or none for a script step.")
            return self.update(list(params), credit, engine, step, events)
        return run_sync(self.astep(engine=engine, events=events))

    async def astep(self, engine: Engine | None = None, events: JsonlLog | None = None) -> list[UpdateEvent]:
        """Consume the credit backward() left on this optimizer's parameters and update them (async twin of step())."""
        if not getattr(self, "params", None):
            raise ConfigError(f"{self.name}: give the parameters to optimize, e.g. {type(self).__name__}(params, engine=engine), "
                              "before calling step() without arguments.")
        engine = engine or self.engine
        if engine is None:
            raise ConfigError(f"{self.name}.step() needs an engine: {type(self).__name__}(params, engine=engine) or step(engine=...).")
        results: list[CreditResult] = []
        for p in self.params:
            for r in getattr(p, "pending_credit", []):
                if not any(r is seen for seen in results):
                    results.append(r)
        if not results:
            raise ConfigError(f"{self.name}.step(): no credit to apply; call tc.backward(losses, engine=...) "
                              "(or loss.backward(...)) first.")
        credit = CreditResult.merge(results)
        if credit.kind not in self.accepts:
            raise ConfigError(f"optimizer {self.name} cannot use credit '{credit.strategy}' (it gives '{credit.kind}', "
                              f"the optimizer needs {' or '.join(sorted(self.accepts))}).")
        self.steps_taken += 1
        applied = await self.update(self.params, credit, engine, self.steps_taken, events)
        self.zero_grad()
        return applied

    def zero_grad(self) -> None:
        """Forget the credit backward() left on the parameters (step() does this after applying it)."""
        for p in getattr(self, "params", []):
            p.pending_credit = []

    # Checkpoints: each shipped optimizer's state_dict() starts from these, so a resumed script counts on.
    def _stepping_state(self) -> dict[str, Any]:
        return {"steps_taken": getattr(self, "steps_taken", 0)}

    def _load_stepping_state(self, state: Any) -> None:
        steps = state.get("steps_taken") if isinstance(state, dict) else None
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise malformed(type(self).__name__, "steps_taken is not a count")
        self.steps_taken = steps


def same_value(current: Any, proposed: Any) -> bool:
    """True when a proposal would change nothing: equal values, or texts equal up to surrounding whitespace (a reply's
    delimiters drop a code value's trailing newline; that is not a new version)."""
    if isinstance(current, str) and isinstance(proposed, str):
        return current.strip() == proposed.strip()
    return current == proposed


def apply_proposal(params: list[Parameter], proposal: Proposal, step: int) -> list[UpdateEvent]:
    """Apply a proposal through Parameter.update (so every change is a new version) and report each parameter."""
    events = list(proposal.unchanged)
    for param in params:
        if param.id in proposal.values:
            old_version = param.version
            if same_value(param.value, proposal.values[param.id]):  # a plug-in's or a merge's proposal, too
                events.append(UpdateEvent(param.id, False, old_version, reason="the proposal equals the current value"))
                continue
            failure = param.rejection(proposal.values[param.id])
            if failure is not None:  # a proposal built elsewhere (a merge, a plug-in) still never corrupts a parameter
                events.append(UpdateEvent(param.id, False, old_version, reason=f"proposal {failure}, kept v{old_version}"))
                continue
            entry = param.update(proposal.values[param.id], step, reason=proposal.reasons.get(param.id, "update"))
            events.append(UpdateEvent(param.id, True, old_version, entry.version, reason=entry.reason))
    return events


MAX_REPLY_CHARS = 4_000_000  # a reply longer than this is not searched for a value


def extract_delimited(text: str, open_tag: str = prompts.NEW_VALUE_OPEN, close_tag: str = prompts.NEW_VALUE_CLOSE) -> str:
    """The text between the last opening delimiter and the closing one after it; ParseError for anything else."""
    if not isinstance(text, str):
        raise ParseError(f"the reply is not text (got {type(text).__name__})")
    if len(text) > MAX_REPLY_CHARS:
        raise ParseError(f"the reply has {len(text)} characters; at most {MAX_REPLY_CHARS} are read")
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

    Returns (value or None, the last error, the attempt that succeeded). A value a validator rejects is treated like
    a malformed reply: the re-ask quotes the validator's reason.
    """
    messages = [Message(role="system", content=system), Message(role="user", content=user)]
    error: ParseError | str = ""
    for attempt in range(2):  # the first try, and one re-ask that quotes the parse error
        request = LLMRequest(messages=tuple(messages), max_tokens=max_tokens, temperature=temperature,
                             sample_index=sample_index, tag=tag)
        reply = await engine.acomplete(request)
        try:
            return coerce_value(param, extract_delimited(reply.text)), "", attempt
        except ParseError as exc:
            error = exc
            messages += [Message(role="assistant", content=reply.text), Message(role="user", content=prompts.REASK_PARSE.format(
                error=exc, open=prompts.NEW_VALUE_OPEN, close=prompts.NEW_VALUE_CLOSE))]
    return None, error, 2


def rejected_reply(optimizer: str, param: Parameter, step: int, error: ParseError | str, events: JsonlLog | None,
                   sample_index: int = 0) -> UpdateEvent:
    """Log a reply that stayed malformed (or whose value a validator rejected) after the re-ask; the value is kept."""
    validator = getattr(error, "validator", None)
    if events is not None:
        record = {"kind": "optimizer_reply_rejected", "optimizer": optimizer, "param": param.id, "step": step,
                  "sample_index": sample_index, "reason": str(error), "kept_version": param.version}
        if validator:
            record["validator"] = validator
        events.write(record)
    what = "rejected optimizer value" if validator else "malformed optimizer reply"
    return UpdateEvent(param.id, False, param.version, reason=f"{what}, kept v{param.version}: {error}")
