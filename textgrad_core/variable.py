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

from textgrad_core.errors import ConfigError

# Provisional ids of variables created outside any tape: unique in the process, renumbered before any prompt.
_untaped_ids = itertools.count()
UNTAPED_PREFIX = "_u"

ParameterKind = Literal["text", "number", "code"]


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
    """A trainable Variable with a stable id, a name, constraints and its full version history."""

    name: str = ""
    kind: ParameterKind = "text"
    constraints: list[str] = field(default_factory=list)
    history: list[ParameterVersion] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name or not _NAME.match(self.name):
            raise ConfigError(f"Parameter name {self.name!r} is not valid: use letters, digits, '_', '.', '-' (e.g. 'solver.instruction').")
        self.id = self.name  # stable across runs and processes: ids are the user's names
        self.requires_grad = True
        self.pending_credit = []  # CreditResults from backward() not yet consumed by an optimizer's step()
        if not self.history:
            self.history.append(ParameterVersion(0, self.value, None, "initial"))
        # Parameters are shared by every forward pass, so they are not recorded on any one tape.

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
