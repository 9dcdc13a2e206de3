"""Build the pieces of a run (engines, task, credit strategy, optimizer) from a resolved config mapping."""
from __future__ import annotations

from typing import Any, Mapping

from credit.adaptive import AdaptiveCredit
from credit.backprop import Backprop
from credit.outcome import OutcomeCredit
from credit.semantic import SemanticBackprop
from credit.trace import TracePropagation
from tasks.registry import load_task
from textgrad_core.engines import EngineSet, JsonlLog, Ledger, PriceTable
from textgrad_core.engines.config import BudgetConfig
from textgrad_core.errors import ConfigError
from textgrad_core.optimizers import TGD
from textgrad_core.optimizers import OPRO, JointUpdate
from textgrad_core.search import CandidateSearch
from textgrad_core.task import Task

CREDIT = {"backprop": Backprop, "semantic": SemanticBackprop, "trace": TracePropagation, "outcome": OutcomeCredit,
          "adaptive": AdaptiveCredit}
OPTIMIZERS = {"tgd": TGD, "joint": JointUpdate, "opro": OPRO}


def _build(kind: str, registry: Mapping[str, Any], cfg: Mapping[str, Any]) -> Any:
    options = dict(cfg)
    name = options.pop("name", None)
    if name not in registry:
        raise ConfigError(f"Unknown {kind} '{name}'. Known: {', '.join(sorted(registry))}.")
    try:
        return registry[name](**options)
    except TypeError as exc:
        raise ConfigError(f"Invalid options for {kind} '{name}': {exc}") from exc


def build_credit(cfg: Mapping[str, Any]) -> Any:
    """The credit strategy named by `credit.name`."""
    return _build("credit strategy", CREDIT, cfg)


def build_optimizer(cfg: Mapping[str, Any], credit: Any) -> Any:
    """The optimizer named by `optimizer.name`, checked against what the credit strategy provides."""
    optimizer = _build("optimizer", OPTIMIZERS, cfg)
    if credit.kind not in optimizer.accepts:
        fits = [n for n, c in CREDIT.items() if c.kind in optimizer.accepts]
        raise ConfigError(f"optimizer={optimizer.name} cannot use credit={credit.name} (it gives '{credit.kind}', the "
                          f"optimizer needs {' or '.join(sorted(optimizer.accepts))}); "
                          f"credit strategies that fit: {', '.join(fits) or 'none registered'}.")
    return optimizer


def build_search(cfg: Mapping[str, Any] | None, optimizer: Any) -> CandidateSearch | None:
    """Candidate search around the optimizer, selected by `search.name` (greedy, beam, pareto); None for `none`."""
    options = dict(cfg or {})
    name = options.pop("name", "none")
    if name in (None, "none"):
        return None
    try:
        return CandidateSearch(optimizer, selection=name, **options)
    except TypeError as exc:
        raise ConfigError(f"Invalid options for search '{name}': {exc}") from exc


def role_configs(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-role engine configs: `engine` for every role, with `engines.<role>` overrides merged over it."""
    base = dict(cfg["engine"])
    out = {}
    for role, override in (cfg.get("engines") or {}).items():
        if override:
            merged = {**base, **dict(override)}
            if "cache" in override and "cache" in base:
                merged["cache"] = {**dict(base["cache"]), **dict(override["cache"])}
            out[role] = merged
    out.setdefault("forward", base)
    return out


def build_engines(cfg: Mapping[str, Any], task: Task, splits: Any, call_log: JsonlLog | None) -> EngineSet:
    """The run's engines, sharing one ledger (with the budget and price table) and one call log."""
    ledger = Ledger(budget=BudgetConfig.model_validate(dict(cfg.get("budget") or {})),
                    prices=PriceTable(dict(cfg.get("pricing") or {})))
    configs = role_configs(cfg)
    world = task.sim_world(splits) if any(c.get("provider") == "sim" for c in configs.values()) else None
    return EngineSet(configs, ledger=ledger, call_log=call_log, sim_world=world)


__all__ = ["build_credit", "build_engines", "build_optimizer", "build_search", "load_task", "role_configs"]
