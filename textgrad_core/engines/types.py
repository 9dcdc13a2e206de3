"""Requests, replies and usage records exchanged with every engine backend."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["forward", "credit", "optimizer", "judge", "eval"]
ROLES: tuple[str, ...] = ("forward", "credit", "optimizer", "judge", "eval")
# Request fields that never reach the model, hence never part of the cache key.
_BOOKKEEPING = {"tag"}


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True)
    role: Literal["system", "user", "assistant"]
    content: str


class ResponseFormat(BaseModel):
    """Ask for a JSON reply, optionally validated against a JSON schema."""

    model_config = ConfigDict(frozen=True)
    type: Literal["json_object", "json_schema"] = "json_schema"
    name: str = "reply"
    json_schema: dict[str, Any] | None = None


class LLMRequest(BaseModel):
    """Everything that can change an LLM's reply, plus bookkeeping that cannot."""

    model_config = ConfigDict(frozen=True)
    messages: tuple[Message, ...]
    model: str | None = None  # None: the engine's configured model
    temperature: float = 0.0
    max_tokens: int = 1024
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat | None = None
    # n samples at temperature > 0 are n distinct requests, hence n cache entries.
    sample_index: int = 0
    # Bookkeeping only: never part of the cache key.
    tag: str = Field(default="", description="free-form label for the call log (e.g. op name)")

    def cache_key(self, provider: str, model: str, backend: Mapping[str, Any] | None = None) -> str:
        """A hash of everything that changes the reply; stable across processes and machines.

        Every field of the request but the bookkeeping ones is hashed (so a new sampling field can never be
        forgotten), with the provider, the resolved model and `backend`: what the backend contributes to the
        reply (its endpoint, options, extra headers, the simulator's seed and fault rates; see
        `Backend.reply_identity`)."""
        fields = self.model_dump(mode="json", exclude=_BOOKKEEPING | {"model"})
        payload = {"provider": provider, "model": model, "request": fields, "backend": dict(backend or {})}
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def chat(cls, user: str, system: str | None = None, **kwargs: Any) -> "LLMRequest":
        """Build a request from a user message and an optional system prompt."""
        messages = ([Message(role="system", content=system)] if system else []) + [
            Message(role="user", content=user)
        ]
        return cls(messages=tuple(messages), **kwargs)

    @property
    def system(self) -> str | None:
        """The system prompt, when there is one."""
        parts = [m.content for m in self.messages if m.role == "system"]
        return "\n\n".join(parts) if parts else None

    @property
    def user_text(self) -> str:
        """All user messages joined, for logs and the simulator."""
        return "\n\n".join(m.content for m in self.messages if m.role == "user")


class Usage(BaseModel):
    """Token counts of one call."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class LLMReply(BaseModel):
    """The reply of one call, with its accounting."""

    text: str
    parsed: Any = None  # the decoded JSON object when a response_format was requested
    model: str
    provider: str
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    latency_s: float = 0.0
    cache_hit: bool = False
    cost_usd: float = 0.0
    # True when the model has no price in the table: its cost_usd of 0 is unknown, not free.
    unpriced: bool = False
