"""What every module shares: a name, declared trainable parameters, and reading their current values.

A module is a compound-system archetype (self-consistency, RAG, an agent, ...) built from traced ops. It declares
its parameters (`parameters()`: fresh Parameters named `<module name>.<key>`), so a task returns them from
`initial_parameters()` and passes the run's ParameterSet back to `acall(...)`; a script may instead use the
module's own set (`module.params`). Every value a module reads from a parameter is also an input of the op it
shapes, so credit (backprop, trace, ...) reaches it.
"""
from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Any

from textgrad_core.errors import ConfigError
from textgrad_core.modules.recorder import declare, observe
from textgrad_core.variable import Parameter, ParameterSet


@dataclass
class ParameterSpec:
    """One trainable parameter a module declares: its key (after the module's name), initial value and meaning."""

    key: str
    value: Any
    role: str
    kind: str = "text"
    constraints: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # further Parameter fields (e.g. a choice's options)


class Module:
    """Base of the modules: declared parameters by key, looked up in the run's ParameterSet."""

    def __init__(self, name: str):
        if not name or not isinstance(name, str):
            raise ConfigError(f"A module needs a name (the prefix of its parameters), got {name!r}.")
        self.name = name
        self._params: ParameterSet | None = None

    def specs(self) -> list[ParameterSpec]:
        """The parameters this module declares (each module defines it)."""
        raise NotImplementedError

    def parameters(self) -> list[Parameter]:
        """Fresh trainable Parameters with their initial values, named `<module name>.<key>`."""
        made = [Parameter(value=s.value, role=s.role, name=f"{self.name}.{s.key}", kind=s.kind,  # type: ignore[arg-type]
                          constraints=list(s.constraints), **s.extra) for s in self.specs()]
        description, source = self.structure()
        for param in made:
            declare(param, f"{type(self).__name__} '{self.name}'", description, source)
        return made

    def structure(self) -> tuple[str, str]:
        """The module's description (its module and class docstrings) and the source of its `acall`: what a
        static-analysis optimizer reads instead of running the system."""
        cls = type(self)
        doc = "\n\n".join(d for d in (inspect.getdoc(inspect.getmodule(cls)), inspect.getdoc(cls)) if d)
        try:
            source = textwrap.dedent(inspect.getsource(cls.acall))  # type: ignore[attr-defined]
        except (OSError, TypeError, AttributeError):
            source = ""
        return doc, source

    @property
    def params(self) -> ParameterSet:
        """The module's own parameters, for a script that runs it outside a task (made on first use)."""
        if self._params is None:
            self._params = ParameterSet(self.parameters())
        return self._params

    def param(self, params: ParameterSet | None, key: str) -> Parameter:
        """The parameter `<name>.<key>` of `params` (the run's set), else of the module's own set."""
        source = params if params is not None else self.params
        full = f"{self.name}.{key}"
        if full not in source:
            raise ConfigError(f"module {self.name}: parameter '{full}' is missing from the parameter set: return "
                              f"module.parameters() from the task's initial_parameters().")
        return source[full]


    def record(self, params: ParameterSet | None, input: Any, output: Any) -> None:
        """Let every parameter of this module observe one pass (kept only on training passes; see recorder)."""
        for spec in self.specs():
            observe(self.param(params, spec.key), input, output, f"{type(self).__name__} '{self.name}'")


def whole_number(param: Parameter, low: int, high: int) -> int:
    """A number parameter read as an integer within [low, high] (an optimizer may propose 4.6 or 1000)."""
    try:
        value = int(round(float(param.value)))
    except (TypeError, ValueError):
        raise ConfigError(f"parameter '{param.id}' must be a number, got {param.value!r}.") from None
    return max(low, min(high, value))


def fraction(param: Parameter) -> float:
    """A number parameter read as a fraction in [0, 1]."""
    try:
        value = float(param.value)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter '{param.id}' must be a number in [0, 1], got {param.value!r}.") from None
    return max(0.0, min(1.0, value))
