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
from textgrad_core.engines.limits import AdaptiveLimit, Endpoint, RunBound
from textgrad_core.engines.scripted import ScriptedBackend
from textgrad_core.engines.sync import run_sync
from textgrad_core.engines.types import LLMReply, LLMRequest, Message, ResponseFormat, Usage
from textgrad_core.errors import ConfigError
from textgrad_core.runlog import JsonlLog

__all__ = [
    "AdaptiveLimit", "Endpoint", "RunBound", "Backend", "BudgetConfig", "CALL_CONTEXT_FIELDS", "CacheConfig", "Engine", "EngineConfig", "EngineSet",
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
                 events: JsonlLog | None = None, endpoint: Endpoint | None = None, run_bound: RunBound | None = None,
                 **backend_kwargs: Any) -> Engine:
    """An engine for one config, wrapped in the shared call policy (cache, retries, accounting, logs, events).

    `endpoint` and `run_bound` share concurrency bounds with other engines (EngineSet passes them); without them
    the engine has a bound of its own of `max_concurrency`."""
    config = parse_engine_config(config)
    cache = open_cache(config)
    return Engine(config, backend or build_backend(config, **backend_kwargs), ledger=ledger, call_log=call_log,
                  role=role, cache=cache, events=events, endpoint=endpoint, run_bound=run_bound)


def endpoint_key(config: EngineConfig) -> tuple:
    """What makes two configs one endpoint: provider, the URL the client really talks to, and the key variable.
    The simulator and scripted engines have no endpoint: each config is its own."""
    if config.provider in ("openai", "anthropic"):
        from textgrad_core.engines.providers import _endpoint
        return (config.provider, _endpoint(config), config.key_env)
    return ("engine", config.identity())


def parse_max_in_flight(value: Any) -> int | None:
    """`concurrency.max_in_flight`: a whole number >= 1, or None for no run-wide bound."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"concurrency.max_in_flight={value!r} is not allowed: give a whole number >= 1 (calls in "
                          "flight over every endpoint of the run), or null for no run-wide bound.")
    return value


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
    """The engines of a run by role, sharing one ledger and call log; identical configs share one engine.

    Roles on one endpoint (provider + base URL + key variable) share one SDK client and one adaptive concurrency
    bound, whatever their model, temperature or headers; its ceiling is the smallest `max_concurrency` among
    them. `max_in_flight` (config `concurrency.max_in_flight`) bounds the calls in flight over all endpoints."""

    def __init__(self, configs: Mapping[str, EngineConfig | Mapping[str, Any]], *, ledger: Ledger | None = None,
                 call_log: JsonlLog | None = None, events: JsonlLog | None = None, max_in_flight: int | None = None,
                 **backend_kwargs: Any):
        max_in_flight = parse_max_in_flight(max_in_flight)
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
        self.run_bound = RunBound(max_in_flight) if max_in_flight is not None else None
        self.endpoints: dict[tuple, Endpoint] = {}
        for cfg in parsed.values():
            key = endpoint_key(cfg)
            if key in self.endpoints:
                self.endpoints[key].lower_ceiling(cfg.max_concurrency)
            else:
                self.endpoints[key] = Endpoint(key, cfg.max_concurrency, name=f"{key[0]} {key[1]}")
        shared: dict[tuple, Engine] = {}
        self._engines: dict[str, Engine] = {}
        for role, cfg in parsed.items():
            base = shared.get(cfg.identity())
            if base is None:
                base = shared[cfg.identity()] = build_engine(
                    cfg, ledger=self.ledger, call_log=call_log, role=role, events=events,
                    endpoint=self.endpoints[endpoint_key(cfg)], run_bound=self.run_bound, **backend_kwargs)
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
