"""LLM engines: one async protocol, many backends, one shared call policy."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from textgrad_core.engines.accounting import Ledger, PriceTable, UsageTotals
from textgrad_core.engines.base import Backend, Engine, TransientProviderError
from textgrad_core.engines.cache import RequestCache
from textgrad_core.engines.config import BudgetConfig, CacheConfig, EngineConfig, parse_engine_config
from textgrad_core.engines.context import CALL_CONTEXT_FIELDS, call_context, current_call_context
from textgrad_core.engines.http_logging import quiet_http_loggers, route_http_logs, unroute_http_logs
from textgrad_core.engines.scripted import ScriptedBackend
from textgrad_core.engines.sync import run_sync
from textgrad_core.engines.types import LLMReply, LLMRequest, Message, ResponseFormat, Usage
from textgrad_core.errors import ConfigError
from textgrad_core.runlog import JsonlLog

__all__ = [
    "Backend", "BudgetConfig", "CALL_CONTEXT_FIELDS", "CacheConfig", "Engine", "EngineConfig", "EngineSet",
    "JsonlLog", "LLMReply", "LLMRequest", "Ledger", "Message", "PriceTable", "RequestCache", "ResponseFormat",
    "ScriptedBackend", "TransientProviderError", "Usage", "UsageTotals", "build_backend", "build_engine",
    "call_context", "current_call_context", "quiet_http_loggers", "route_http_logs", "run_sync", "unroute_http_logs",
]

# The roles of a run; `judge` defaults to the credit engine and `eval` to the forward engine.
ENGINE_ROLES = ("forward", "credit", "optimizer", "judge", "eval")
_ROLE_DEFAULTS = {"judge": "credit", "eval": "forward"}


def build_backend(config: EngineConfig, sim_world: Any = None, scripted: Backend | None = None) -> Backend:
    """The backend named by `config.provider` (the simulator gets the task's world; `scripted` is a test's backend)."""
    if config.provider == "openai":
        from textgrad_core.engines.providers import OpenAIBackend
        return OpenAIBackend(config)
    if config.provider == "anthropic":
        from textgrad_core.engines.providers import AnthropicBackend
        return AnthropicBackend(config)
    if config.provider == "sim":
        from textgrad_core.engines.sim import SimBackend
        return SimBackend(config, sim_world=sim_world)
    if config.provider == "scripted":
        return scripted if scripted is not None else ScriptedBackend()
    raise AssertionError(config.provider)  # EngineConfig validation lists the known providers


def open_cache(config: EngineConfig, where: str = "engine") -> RequestCache | None:
    """The request cache of a config (None when off); replay needs an existing recording."""
    mode = config.cache.effective_mode
    if mode == "off":
        return None
    if mode == "replay" and not Path(config.cache.path).expanduser().is_file():
        raise ConfigError(f"{where}.cache.mode=replay but there is no recorded cache at {config.cache.path}: record "
                          f"one first with {where}.cache.mode=readwrite, or point {where}.cache.path at it.")
    return RequestCache(config.cache.path, config.cache.namespace)


def build_engine(config: EngineConfig | Mapping[str, Any], *, ledger: Ledger | None = None,
                 call_log: JsonlLog | None = None, role: str = "forward", backend: Backend | None = None,
                 events: JsonlLog | None = None, **backend_kwargs: Any) -> Engine:
    """An engine for one config, wrapped in the shared call policy (cache, retries, accounting, logs, events)."""
    config = parse_engine_config(config)
    cache = open_cache(config)
    return Engine(config, backend or build_backend(config, **backend_kwargs), ledger=ledger, call_log=call_log,
                  role=role, cache=cache, events=events)


def check_prices(configs: Mapping[str, EngineConfig], ledger: Ledger) -> None:
    """A cost budget needs every model priced, else it could never stop the run: one ConfigError naming the fix."""
    budget = ledger.budget
    if budget.max_cost_usd is None or budget.allow_unpriced:
        return
    for role, cfg in configs.items():
        if not ledger.prices.is_priced(cfg.provider, cfg.model):
            raise ConfigError(
                f"budget.max_cost_usd={budget.max_cost_usd} is set but model '{cfg.model}' (engines.{role}) has no "
                f"price, so its calls would count as $0: set pricing.{cfg.model}.input and pricing.{cfg.model}.output "
                f"(USD per million tokens), or set budget.allow_unpriced=true to run without a cost limit on it.")


class EngineSet:
    """The engines of a run by role, sharing one ledger and call log; identical configs share one engine."""

    def __init__(self, configs: Mapping[str, EngineConfig | Mapping[str, Any]], *, ledger: Ledger | None = None,
                 call_log: JsonlLog | None = None, events: JsonlLog | None = None, **backend_kwargs: Any):
        self.ledger = ledger or Ledger()
        self.call_log = call_log
        self.events = events
        parsed = {role: parse_engine_config(cfg, where=f"engines.{role}") for role, cfg in configs.items() if cfg}
        if "forward" not in parsed:
            raise ConfigError("engines.forward is required: name the provider and model that runs the system.")
        for role in ENGINE_ROLES:
            if role not in parsed:
                parsed[role] = parsed.get(_ROLE_DEFAULTS.get(role, "forward")) or parsed["forward"]
        check_prices(parsed, self.ledger)  # before any client exists: a user error, not a half-built run
        shared: dict[tuple, Engine] = {}
        self._engines: dict[str, Engine] = {}
        for role, cfg in parsed.items():
            base = shared.get(cfg.identity())
            if base is None:
                base = shared[cfg.identity()] = build_engine(cfg, ledger=self.ledger, call_log=call_log, role=role,
                                                             events=events, **backend_kwargs)
            self._engines[role] = base.with_role(role)

    def backfill_cache(self, records: list[dict]) -> int:
        """Put back into each role's cache the replies its logged calls got but never stored (see RequestCache)."""
        added = 0
        for role, engine in self._engines.items():
            if engine.cache is not None and engine.cache_mode == "readwrite":
                added += engine.cache.backfill([r for r in records if r.get("role") == role])
        return added

    def __getitem__(self, role: str) -> Engine:
        return self._engines[role]

    @property
    def simulated(self) -> bool:
        """True when any role runs on the simulator or a scripted engine."""
        return any(e.simulated for e in self._engines.values())

    def describe(self) -> dict[str, str]:
        """role -> 'provider/model', for summaries."""
        return {role: f"{e.provider}/{e.model}" for role, e in self._engines.items()}
