"""Variables, trainable Parameters and the record of the operation that produced a value.

Ids and where they come from (ids reach prompts, so they must never depend on process history):

- a Parameter's id is its name;
- a Variable created while a `Tape` is active gets `v<n>`, its position on that tape (each forward pass numbers
  from v0; a tape opened inside another continues the outer tape's numbering, so one pass never repeats an id);
- a Variable created with no tape active (a user's script) gets a *provisional* id `_u<n>` from a process-wide
  counter, which is unique but not reproducible. It never reaches a prompt: before credit assignment,
  `graph.canonicalize_ids` renumbers every non-parameter variable reachable from the losses by the structure of
  the recorded graph alone (see there), which `textgrad_core.api.backward` always does.
"""
from __future__ import annotations

import contextvars
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from textgrad_core import validators as _validators
from textgrad_core.errors import ConfigError

# Provisional ids of variables created outside any tape: unique in the process, renumbered before any prompt.
_untaped_ids = itertools.count()
UNTAPED_PREFIX = "_u"

ParameterKind = Literal["text", "number", "code", "demos", "choice"]
PARAMETER_KINDS = ("text", "number", "code", "demos", "choice")


@dataclass
class OpRecord:
    """How a Variable was produced: which operation, from which inputs, with what exact prompt or code."""

    name: str
    kind: str  # "llm", "formatted_llm", "function", "join", "loss", ...
    inputs: list[tuple[str, "Variable"]]  # (field name, input variable), in call order
    description: str = ""  # what the op does, in words (docstring for functions)
    source: str | None = None  # Python source of a traced function
    prompt: list[dict[str, str]] | None = None  # the exact messages sent, for LLM ops
    template: str | None = None  # the template of a formatted LLM call
    error: str | None = None  # set when the op raised: the output then carries the message


@dataclass(eq=False)
class Variable:
    """A value in the computation graph, with its role in words and the feedback it received."""

    value: Any
    role: str
    requires_grad: bool = False
    op: OpRecord | None = None
    feedback: list[str] = field(default_factory=list)
    id: str = ""  # see the module docstring: tape position, parameter name, or provisional
    score: float | None = None  # set on loss variables; None on a loss means "unscored" (e.g. a judge gave none)
    example_id: str | None = field(default=None, repr=False)  # the example of the tape it was recorded on

    def __post_init__(self) -> None:
        tape = _current_tape.get()
        if tape is not None:
            tape.record(self)
        elif not self.id:
            self.id = f"{UNTAPED_PREFIX}{next(_untaped_ids)}"

    @property
    def inputs(self) -> list["Variable"]:
        return [v for _, v in self.op.inputs] if self.op else []

    @property
    def is_error(self) -> bool:
        return bool(self.op and self.op.error)

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        text = str(self.value)
        return f"{type(self).__name__}({self.id}, role={self.role!r}, value={text[:60]!r}{'...' if len(text) > 60 else ''})"


@dataclass
class ParameterVersion:
    """One value a parameter held, and why it changed."""

    version: int
    value: Any
    step: int | None
    reason: str  # "initial", "update", "revert to v3", ...
    ts: float = field(default_factory=time.time)


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(eq=False)
class Parameter(Variable):
    """A trainable Variable with a stable id, a name, constraints, validators and its full version history.

    Kinds: `text`, `number`, `code`, `choice` (one of `choices`, e.g. a model name or a k) and `demos` (an ordered
    list of {"id", "input", "output"} examples; with `allowed_ids` every id must be one of them — give the ids of
    the training split, so no validation or test example can become a demo; `pool` optionally lists the training
    examples the optimizer may choose demos from, and its ids are then the allowed ones). `validators` adds
    mechanical checks to the kind's defaults (see textgrad_core.validators); `constraints` stay textual.
    """

    name: str = ""
    kind: ParameterKind = "text"
    constraints: list[str] = field(default_factory=list)
    history: list[ParameterVersion] = field(default_factory=list)
    choices: list[Any] | None = None  # kind "choice": the declared set
    allowed_ids: list[Any] | None = None  # kind "demos": the ids a demo may have (the training split's)
    pool: list[dict[str, Any]] | None = None  # kind "demos": training examples the optimizer may pick demos from
    validators: list[Any] = field(default_factory=list)  # the task's own validators, after the kind's defaults

    def __post_init__(self) -> None:
        if not self.name or not _NAME.match(self.name):
            raise ConfigError(f"Parameter name {self.name!r} is not valid: use letters, digits, '_', '.', '-' (e.g. 'solver.instruction').")
        self._check_kind()
        self.id = self.name  # stable across runs and processes: ids are the user's names
        self.requires_grad = True
        self.pending_credit = []  # CreditResults from backward() not yet consumed by an optimizer's step()
        if not self.history:
            self.history.append(ParameterVersion(0, self.value, None, "initial"))
        # Parameters are shared by every forward pass, so they are not recorded on any one tape.

    def _check_kind(self) -> None:
        """Check the kind's declaration and the initial value; one ConfigError naming the fix."""
        if self.kind not in PARAMETER_KINDS:
            raise ConfigError(f"Parameter {self.name!r}: unknown kind {self.kind!r}; use one of {', '.join(PARAMETER_KINDS)}.")
        if self.kind == "choice":
            if not self.choices:
                raise ConfigError(f"Parameter {self.name!r} is a choice: declare its set, e.g. choices=['gpt-4o-mini', 'gpt-4o'].")
            self.choices = list(self.choices)
        elif self.choices is not None:
            raise ConfigError(f"Parameter {self.name!r}: choices=... is only for kind='choice' (it is {self.kind!r}).")
        if self.kind == "demos":
            if self.pool is not None:
                self.pool = list(self.pool)
                pool_ids = [str(d.get("id")) for d in self.pool if isinstance(d, dict)]
                if self.allowed_ids is None:
                    self.allowed_ids = pool_ids
                elif not set(pool_ids) <= {str(i) for i in self.allowed_ids}:
                    raise ConfigError(f"Parameter {self.name!r}: the demos pool has ids outside allowed_ids; "
                                      "build the pool from the training split only.")
        elif self.allowed_ids is not None or self.pool is not None:
            raise ConfigError(f"Parameter {self.name!r}: allowed_ids/pool are only for kind='demos' (it is {self.kind!r}).")
        declared = [_validators.from_config(v) for v in self.validators]
        if self.kind == "demos" and self.pool is not None:
            bad = _validators.DemosFrom(self.allowed_ids).check(self.pool, self)
            if bad:
                raise ConfigError(f"Parameter {self.name!r}: the demos pool is not valid: {bad}.")
        self.validators = _validators.default_validators(self.kind, self.choices, self.allowed_ids) + declared
        # The initial value is the user's: a failure is a configuration mistake, said once, before any call.
        failure = _validators.first_failure(self.validators, self.value, self if self.history else _Initial(self.value))
        if failure is not None:
            raise ConfigError(f"Parameter {self.name!r}: its initial value is {failure}; fix the value or the validator.")

    def rejection(self, value: Any) -> "_validators.ValueRejected | None":
        """Why a proposed value must be rejected (the first validator it fails), or None when every one accepts it."""
        return _validators.first_failure(self.validators, value, self)

    @property
    def version(self) -> int:
        return self.history[-1].version

    def update(self, value: Any, step: int | None, reason: str = "update") -> ParameterVersion:
        """Set a new value and append it to the history."""
        self.value = value
        entry = ParameterVersion(self.version + 1, value, step, reason)
        self.history.append(entry)
        return entry

    def revert_to(self, version: int, step: int | None, reason: str = "") -> ParameterVersion:
        """Restore an earlier value; the revert is itself a new version, so history is never rewritten."""
        old = next(v for v in self.history if v.version == version)
        return self.update(old.value, step, reason or f"revert to v{version}")


@dataclass
class _Initial:
    """Stands for a parameter whose history does not exist yet (validators relative to the initial value)."""

    value: Any

    @property
    def history(self) -> list[ParameterVersion]:
        return [ParameterVersion(0, self.value, None, "initial")]


class ParameterSet:
    """The trainable parameters of a system by unique name."""

    def __init__(self, params: list[Parameter] | None = None):
        self._params: dict[str, Parameter] = {}
        for p in params or []:
            self.add(p)

    def add(self, param: Parameter) -> Parameter:
        if param.id in self._params:
            raise ConfigError(f"Two parameters are named {param.id!r}; parameter names must be unique.")
        self._params[param.id] = param
        return param

    def __getitem__(self, name: str) -> Parameter:
        return self._params[name]

    def __iter__(self):
        return iter(self._params.values())

    def __len__(self) -> int:
        return len(self._params)

    def __contains__(self, name: str) -> bool:
        return name in self._params

    def values(self) -> dict[str, Any]:
        """name -> current value."""
        return {p.id: p.value for p in self}

    def versions(self) -> dict[str, int]:
        return {p.id: p.version for p in self}


class Tape:
    """Records every Variable created while it is active in this context (one tape per forward pass).

    Each variable recorded gets the id `v<n>`, its position on the tape, unless it already has one.
    """

    def __init__(self, example_id: str | None = None):
        self.example_id = example_id
        self.variables: list[Variable] = []
        self._token: contextvars.Token | None = None
        self._counter = itertools.count()

    def record(self, var: Variable) -> None:
        """Append `var` and give it its position on the tape as id."""
        self.variables.append(var)
        if not var.id:
            var.id = f"v{next(self._counter)}"
        if var.example_id is None:
            var.example_id = self.example_id

    def __enter__(self) -> "Tape":
        outer = _current_tape.get()
        if outer is not None and not self.variables:  # nested: continue the outer numbering, never repeat an id
            self._counter = outer._counter
        self._token = _current_tape.set(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._token is not None
        _current_tape.reset(self._token)


# Context-local, so concurrent forward passes (asyncio tasks or threads) each record into their own tape.
_current_tape: contextvars.ContextVar[Tape | None] = contextvars.ContextVar("textgrad_tape", default=None)
