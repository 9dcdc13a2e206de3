"""Build the pieces of a run (engines, task, credit strategy, optimizer) from a resolved config mapping."""
from __future__ import annotations

from typing import Any, Mapping

from tasks.registry import load_task
from textgrad_core import registry
from textgrad_core.engines import EngineSet, JsonlLog, Ledger, PriceTable
from textgrad_core.engines.config import parse_budget_config
from textgrad_core.errors import ConfigError
from textgrad_core.gepa import GEPASearch
from textgrad_core.search import CandidateSearch
from textgrad_core.task import Task

# name -> class views of the one registry (textgrad_core.registry: entry points, registered names, import paths).
CREDIT = registry.RegistryView("credit")
OPTIMIZERS = registry.RegistryView("optimizer")


def build_credit(cfg: Mapping[str, Any]) -> Any:
    """The credit strategy named by `credit.name`, or given by import path as `credit._target_`."""
    return registry.build("credit", cfg)


def build_optimizer(cfg: Mapping[str, Any], credit: Any) -> Any:
    """The optimizer named by `optimizer.name` (or `optimizer._target_`), checked against what the credit gives."""
    optimizer = registry.build("optimizer", cfg)
    if credit.kind not in optimizer.accepts:
        fits = [n for n, c in CREDIT.items() if c.kind in optimizer.accepts]
        raise ConfigError(f"optimizer={optimizer.name} cannot use credit={credit.name} (it gives '{credit.kind}', the "
                          f"optimizer needs {' or '.join(sorted(optimizer.accepts))}); "
                          f"credit strategies that fit: {', '.join(fits) or 'none registered'}.")
    return optimizer


PLUG_IN_GROUPS = ("task", "credit", "optimizer")


def plug_in_overrides(overrides: list[str]) -> list[str]:
    """`<group>._target_=pkg.Class` without a `<group>=` choice selects `<group>=custom` (task, credit, optimizer),
    so the default choice's options (e.g. backprop's skip_perfect) stay out of the plug-in's constructor."""
    out = list(overrides)
    for group in PLUG_IN_GROUPS:
        targets = [o for o in out if o.lstrip("+").startswith(f"{group}._target_=")]
        if not targets or any(o.lstrip("+").startswith(f"{group}=") for o in out):
            continue
        # custom.yaml declares `_target_`, so a leading '+' (which Hydra refuses for an existing key) is dropped.
        out = [o.lstrip("+") if o in targets else o for o in out] + [f"{group}=custom"]
    return out


def build_search(cfg: Mapping[str, Any] | None, optimizer: Any) -> CandidateSearch | GEPASearch | None:
    """The step policy around the optimizer, by `search.name`: greedy, beam, pareto (candidate search) or gepa
    (GEPA's own loop); None for `none` (plain update-and-validate)."""
    options = dict(cfg or {})
    name = options.pop("name", "none")
    if name in (None, "none"):
        return None
    try:
        if name == "gepa":
            return GEPASearch(optimizer, **options)
        return CandidateSearch(optimizer, selection=name, **options)
    except TypeError as exc:
        raise ConfigError(f"Invalid options for search '{name}': {exc}") from exc


def role_configs(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-role engine configs: `engine` for every role, with `engines.<role>` overrides merged over it."""
    base = dict(cfg["engine"])
    out = {}
    for role, override in (cfg.get("engines") or {}).items():
        override = {k: v for k, v in dict(override or {}).items() if v is not None}  # null: inherit from `engine`
        if override:
            merged = {**base, **override}
            if "cache" in override and "cache" in base:
                merged["cache"] = {**dict(base["cache"]), **dict(override["cache"])}
            out[role] = merged
    out.setdefault("forward", base)
    return out


def build_engines(cfg: Mapping[str, Any], task: Task, splits: Any, call_log: JsonlLog | None,
                  events: JsonlLog | None = None) -> EngineSet:
    """The run's engines, sharing one ledger (with the budget and price table), one call log and one event log."""
    ledger = Ledger(budget=parse_budget_config(cfg.get("budget") or {}),
                    prices=PriceTable(dict(cfg.get("pricing") or {})))
    configs = role_configs(cfg)
    world = task.sim_world(splits) if any(c.get("provider") == "sim" for c in configs.values()) else None
    return EngineSet(configs, ledger=ledger, call_log=call_log, events=events, sim_world=world,
                     max_in_flight=(cfg.get("concurrency") or {}).get("max_in_flight"))


__all__ = ["CREDIT", "OPTIMIZERS", "build_credit", "build_engines", "build_optimizer", "build_search", "load_task",
           "plug_in_overrides", "role_configs"]
