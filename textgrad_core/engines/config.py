"""Engine configuration: which provider and model each role uses, and how calls are made."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from textgrad_core.errors import ConfigError

KNOWN_PROVIDERS = ("openai", "anthropic", "sim", "scripted")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class CacheConfig(BaseModel):
    """Persistent request cache settings."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    path: str = ".cache/requests.sqlite"
    namespace: str = "default"


class EngineConfig(BaseModel):
    """One LLM backend with its call policy."""

    model_config = ConfigDict(extra="forbid")
    provider: str = "sim"
    model: str = "sim-1"
    base_url: str | None = None
    api_key_env: str | None = None  # default: OPENAI_API_KEY / ANTHROPIC_API_KEY
    max_concurrency: int = Field(default=8, ge=1)
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
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
    def key_env(self) -> str | None:
        """The environment variable that holds this engine's API key."""
        return self.api_key_env or DEFAULT_KEY_ENV.get(self.provider)

    def identity(self) -> tuple:
        """Engines with the same identity share one client, cache and concurrency bound."""
        return (self.provider, self.model, self.base_url, self.key_env, self.cache.path, self.cache.namespace,
                self.cache.enabled, repr(sorted(self.options.items())))


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input: float
    output: float
    cached_input: float | None = None  # default: the input price


class BudgetConfig(BaseModel):
    """Limits after which the run stops cleanly; None means no limit."""

    model_config = ConfigDict(extra="forbid")
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_calls: int | None = None


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
