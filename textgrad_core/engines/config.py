"""Engine configuration: which provider and model each role uses, and how calls are made."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from textgrad_core.errors import ConfigError

KNOWN_PROVIDERS = ("openai", "anthropic", "sim", "scripted")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


CacheMode = Literal["readwrite", "replay", "off"]


class CacheConfig(BaseModel):
    """Persistent request cache settings.

    mode: `readwrite` (default) serves hits and records misses; `replay` serves hits only and a miss is a
    ReplayMissError (never a provider call), so a recorded run replays offline exactly; `off` bypasses the
    cache. `enabled: false` is the same as `mode: off`."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    mode: CacheMode = "readwrite"
    path: str = ".cache/requests.sqlite"
    namespace: str = "default"

    @property
    def effective_mode(self) -> CacheMode:
        """The mode in force: `off` whenever the cache is disabled."""
        return "off" if not self.enabled else self.mode


class EngineConfig(BaseModel):
    """One LLM backend with its call policy."""

    model_config = ConfigDict(extra="forbid")
    provider: str = "sim"
    model: str = "sim-1"
    base_url: str | None = None
    api_key_env: str | None = None  # default: OPENAI_API_KEY / ANTHROPIC_API_KEY
    # None: a key is required unless this is an OpenAI-compatible server at a base_url (local servers usually
    # ignore it). true: the variable must be set; false: an unset variable is fine.
    api_key_required: bool | None = None
    max_concurrency: int = Field(default=8, ge=1)
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    # An empty reply text is retried like a transient fault (a model that meant to say nothing is rarer than a
    # proxy or server that dropped the content).
    retry_empty: bool = True
    cache: CacheConfig = Field(default_factory=CacheConfig)
    # Backend-specific settings (the simulator's seed and error rate, extra headers, ...).
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in KNOWN_PROVIDERS:
            raise ConfigError(
                f"Unknown engine provider '{value}'. Known providers: {', '.join(KNOWN_PROVIDERS)}. "
                "Any OpenAI-compatible server (vLLM, Ollama, llama.cpp, LiteLLM) uses provider=openai with base_url."
            )
        return value

    @property
    def key_required(self) -> bool:
        """Whether a missing API key is an error for this engine."""
        if self.api_key_required is not None:
            return self.api_key_required
        return not (self.provider == "openai" and self.base_url)

    @property
    def key_env(self) -> str | None:
        """The environment variable that holds this engine's API key."""
        return self.api_key_env or DEFAULT_KEY_ENV.get(self.provider)

    def identity(self) -> tuple:
        """Engines with the same identity share one client, cache and concurrency bound."""
        return (self.provider, self.model, normalise_endpoint(self.base_url), self.key_env, self.cache.path,
                self.cache.namespace, self.cache.effective_mode, self.retry_empty, repr(sorted(self.options.items())))


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input: float
    output: float
    cached_input: float | None = None  # default: the input price


class BudgetConfig(BaseModel):
    """Limits after which the run stops cleanly; None means no limit."""

    model_config = ConfigDict(extra="forbid")
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    max_calls: int | None = Field(default=None, ge=0)
    # A cost budget needs every model priced (else it could never trigger); set true to run anyway.
    allow_unpriced: bool = False


def normalise_endpoint(base_url: str | None) -> str | None:
    """The endpoint as one canonical string: scheme and host lower-cased, no trailing slash."""
    if not base_url:
        return None
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(base_url.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def parse_budget_config(data: Any) -> BudgetConfig:
    """Validate `budget:` as a BudgetConfig, raising one ConfigError naming the key and the allowed range."""
    if isinstance(data, BudgetConfig):
        return data
    try:
        return BudgetConfig.model_validate(dict(data or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first.get("loc", ()))
        if first.get("type") == "extra_forbidden":
            raise ConfigError(f"Unknown key budget.{key}; known keys: "
                              f"{', '.join('budget.' + k for k in BudgetConfig.model_fields)}.") from exc
        raise ConfigError(f"Invalid budget.{key}={first.get('input')!r}: {first.get('msg')} "
                          "(budgets are numbers >= 0, or null for no limit).") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid budget config: {exc}") from exc


def parse_engine_config(data: Any, where: str = "engine") -> EngineConfig:
    """Validate a mapping as an EngineConfig, raising one ConfigError that says what to fix."""
    if isinstance(data, EngineConfig):
        return data
    try:
        return EngineConfig.model_validate(dict(data))
    except ValidationError as exc:
        # pydantic wraps the ConfigError of a validator (a ValueError); surface its message as is.
        for error in exc.errors():
            original = (error.get("ctx") or {}).get("error")
            if isinstance(original, ConfigError):
                raise ConfigError(f"Invalid {where} config: {original}") from exc
        raise ConfigError(f"Invalid {where} config: {exc}") from exc
    except Exception as exc:  # not a mapping
        raise ConfigError(f"Invalid {where} config: {exc}") from exc
