"""Errors a user can cause or must act on; each message names the fix."""
from __future__ import annotations


class TextgradError(Exception):
    """Base class of every error this framework raises on purpose."""


class ConfigError(TextgradError, ValueError):
    """A configuration value is missing, unknown or incompatible."""


class MissingAPIKeyError(ConfigError):
    """The environment variable holding a provider's API key is not set."""

    def __init__(self, provider: str, env_var: str):
        self.provider = provider
        self.env_var = env_var
        super().__init__(
            f"No API key for provider '{provider}': set the environment variable {env_var} "
            f"(or point `api_key_env` at the variable that holds it). "
            f"To run offline without any key, use the simulator engine: engine.provider=sim."
        )


class ProviderError(TextgradError):
    """A provider call failed and retries did not help (or it was not retryable)."""

    def __init__(self, provider: str, message: str, status: int | None = None, attempts: int = 1):
        self.provider = provider
        self.status = status
        self.attempts = attempts
        where = f"status {status}" if status is not None else "no HTTP status"
        super().__init__(f"{provider} call failed after {attempts} attempt(s) ({where}): {message}")


class MalformedReplyError(ProviderError):
    """The provider answered with something that is not a valid reply."""


class BudgetExceeded(TextgradError):
    """The run's budget (cost, tokens or calls) is used up; everything written so far stays valid."""


class CacheError(TextgradError):
    """The request cache cannot be read or written; it is never wiped silently."""


class ParseError(TextgradError):
    """An LLM reply could not be parsed into the expected structure."""


class EmptyReplyError(MalformedReplyError):
    """The provider answered with an empty text, and retrying did not help."""


class ReplayMissError(TextgradError):
    """Replay mode (engine.cache.mode=replay) met a request that was never recorded; it stops the run, no call is made.

    Deliberately not a ProviderError: a replay that diverges from its recording is a wrong setup, not one
    failed example."""
