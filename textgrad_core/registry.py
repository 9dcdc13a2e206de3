"""Credit strategies and optimizers by name or import path, for configs and the Python API alike.

textgrad_core never imports `credit/` (layering), so names are resolved here at run time from three sources, in
this order: names registered in this process (`register`), Python entry points of the installed distributions
(groups `textgrad_core.credit` and `textgrad_core.optimizers`; this project declares its own in pyproject.toml,
and a package of yours can declare more), and an import path given as `_target_` (`my_pkg.module.MyCredit` or
`my_pkg.module:MyCredit`). Every mistake is one ConfigError that names the fix.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Iterator, Mapping

from textgrad_core.errors import ConfigError

GROUPS = {"credit": "textgrad_core.credit", "optimizer": "textgrad_core.optimizers"}
_LABEL = {"credit": "credit strategy", "optimizer": "optimizer"}
_A_LABEL = {"credit": "a credit strategy", "optimizer": "an optimizer"}
# What an instance must have to be one (the protocols of textgrad_core.credit and textgrad_core.optimizers.base).
_REQUIRED = {"credit": (("assign", True), ("kind", False), ("name", False)),
             "optimizer": (("step", True), ("accepts", False), ("name", False))}
_PROTOCOL = {"credit": "textgrad_core.credit.CreditAssigner (name, kind, async assign(traces, params, engine))",
             "optimizer": "textgrad_core.optimizers.base.Optimizer (name, accepts, async step(params, credit, engine, step))"}

_registered: dict[str, dict[str, Any]] = {kind: {} for kind in GROUPS}


def register(kind: str, name: str, target: Any) -> None:
    """Make a class (or a 'module:Class' string) available by name for this process."""
    _check_kind(kind)
    _registered[kind][name] = target


def names(kind: str) -> dict[str, Any]:
    """name -> class or 'module:Class' target, for every known name of `kind`, sorted by name."""
    _check_kind(kind)
    found: dict[str, Any] = {}
    from importlib.metadata import entry_points  # here, not at import: reading metadata costs a few ms

    for ep in entry_points(group=GROUPS[kind]):
        found.setdefault(ep.name, ep.value)
    found.update(_registered[kind])
    return dict(sorted(found.items()))


def resolve(kind: str, name: str | None = None, target: str | None = None) -> type:
    """The class for a name or an import path, checked to be a `kind` (credit strategy or optimizer)."""
    _check_kind(kind)
    label = _LABEL[kind]
    if target is None:
        known = names(kind)
        if name not in known:
            listed = ", ".join(known) if known else "none (the entry points are missing: reinstall with pip install -e .)"
            raise ConfigError(f"Unknown {label} '{name}'. Known: {listed}. {_A_LABEL[kind].capitalize()} of your own plugs in with "
                              f"{kind}._target_=your_package.YourClass.")
        target = known[name]
    cls = _import(label, target) if isinstance(target, str) else target
    where = target if isinstance(target, str) else f"{cls.__module__}.{cls.__qualname__}"
    missing = [attr for attr, call in _REQUIRED[kind] if not (callable(getattr(cls, attr, None)) if call else hasattr(cls, attr))]
    if missing:
        raise ConfigError(f"'{where}' is not {_A_LABEL[kind]}: it lacks {', '.join(missing)}. Implement {_PROTOCOL[kind]}.")
    return cls


def build(kind: str, config: Mapping[str, Any] | str | None) -> Any:
    """An instance from a config: `name` plus options, or `_target_` plus options (`name` is then only a label)."""
    cfg = {"name": config} if isinstance(config, str) or config is None else dict(config)
    target = cfg.pop("_target_", None)
    name = cfg.pop("name", None)
    if target is not None and not isinstance(target, str):
        raise ConfigError(f"{kind}._target_ must be an import path like my_pkg.module.MyClass, got {target!r}.")
    if target is None and name is None:
        raise ConfigError(f"No {_LABEL[kind]} given: choose one with {kind}=<name> ({', '.join(names(kind))}) "
                          f"or plug in your own with {kind}._target_=your_package.YourClass.")
    cls = resolve(kind, name=name, target=target)
    return instantiate(kind, cls, cfg, label=target or name)


def instantiate(kind: str, cls: type, options: Mapping[str, Any], label: str | None = None) -> Any:
    """`cls(**options)`, with options checked against its constructor first so a mistake names the option."""
    what = f"{_LABEL[kind]} '{label or cls.__name__}'"
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**options)
        except TypeError as exc:
            accepted = [p.name for p in signature.parameters.values()
                        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in ("params", "engine")]
            raise ConfigError(f"Invalid options for {what}: {exc}. It accepts: {', '.join(accepted) or 'no options'}.") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"Invalid options for {what}: {exc}") from exc


class RegistryView(Mapping[str, type]):
    """A read-only name -> class mapping over the registry (classes are imported when looked up)."""

    def __init__(self, kind: str):
        _check_kind(kind)
        self.kind = kind

    def __getitem__(self, name: str) -> type:
        if name not in names(self.kind):
            raise KeyError(name)
        return resolve(self.kind, name=name)

    def __iter__(self) -> Iterator[str]:
        return iter(names(self.kind))

    def __len__(self) -> int:
        return len(names(self.kind))


def _import(label: str, target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"Cannot import {label} '{target}': use 'package.module.ClassName'.")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Cannot import {label} '{target}': {exc}. Use 'package.module.ClassName' and make sure "
                          "the package is importable (installed, or on PYTHONPATH).") from None


def _check_kind(kind: str) -> None:
    if kind not in GROUPS:
        raise ConfigError(f"Unknown registry kind '{kind}': use one of {', '.join(GROUPS)}.")
