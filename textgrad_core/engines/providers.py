"""Backends for real providers over their official async SDK clients: OpenAI (and every OpenAI-compatible server) and Anthropic."""
from __future__ import annotations

import datetime
import email.utils
import json
import os
import time
from typing import Any

from textgrad_core.engines.base import LoopLocal, TransientProviderError, parse_json_reply
from textgrad_core.engines.config import EngineConfig, normalise_endpoint
from textgrad_core.engines.http_logging import quiet_http_loggers
from textgrad_core.engines.types import LLMReply, LLMRequest, Usage
from textgrad_core.errors import MissingAPIKeyError, ProviderError
from textgrad_core.runlog import redact, register_secret

_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 529}
# Where the SDKs send requests when no base_url is given (each SDK also reads its *_BASE_URL variable).
_DEFAULT_ENDPOINTS = {"openai": ("OPENAI_BASE_URL", "https://api.openai.com/v1"),
                      "anthropic": ("ANTHROPIC_BASE_URL", "https://api.anthropic.com")}


def _api_key(config: EngineConfig) -> str:
    env = config.key_env
    key = os.environ.get(env or "", "")
    if key:
        register_secret(key)  # masked in logs and error messages whatever its shape or variable name
        return key
    if not config.key_required or config.cache.effective_mode == "replay":
        # Local OpenAI-compatible servers (vLLM, Ollama, llama.cpp) usually ignore the key, and a replay never
        # reaches the provider; the SDK still wants a non-empty string.
        return "not-needed"
    raise MissingAPIKeyError(config.provider, env or "<api_key_env>")


def _endpoint(config: EngineConfig) -> str:
    """The endpoint this backend's SDK client really talks to, normalised."""
    env, default = _DEFAULT_ENDPOINTS[config.provider]
    return normalise_endpoint(config.base_url or os.environ.get(env) or default) or default


def _reply_identity(config: EngineConfig) -> dict[str, Any]:
    """What of a provider backend changes replies: the endpoint and every option (extra headers included)."""
    return {"endpoint": _endpoint(config), "options": config.options}


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from Retry-After / retry-after-ms headers, if the server sent them."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:  # an HTTP-date
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unparsable: fall back to our own backoff
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)  # HTTP-dates are always GMT
    return max(0.0, parsed.timestamp() - time.time())


def _classify(provider: str, exc: Exception, sdk: Any) -> Exception:
    """Map an SDK exception to a retryable or final error that says what happened."""
    status = getattr(exc, "status_code", None)
    message = redact(_error_message(exc))
    if isinstance(exc, sdk.APITimeoutError):
        return TransientProviderError(f"request timed out: {message}", reason="timeout")
    if isinstance(exc, sdk.APIConnectionError):
        return TransientProviderError(f"connection error: {message}", reason="connection")
    if isinstance(exc, sdk.APIStatusError):
        if status in _RETRYABLE_STATUS:
            return TransientProviderError(message, status=status, retry_after=_retry_after(exc.response.headers))
        return ProviderError(provider, message, status=status)
    # A 200 whose body is not JSON (ValueError; e.g. cut short) or is JSON of the wrong shape (the SDK builds its
    # models without validation, so missing fields surface as None / wrong types when the reply is read). A
    # proxy or overloaded server does this now and then: retried like any transient fault.
    if isinstance(exc, (sdk.APIResponseValidationError, ValueError, KeyError, TypeError, IndexError, AttributeError)):
        return TransientProviderError(f"malformed response body: {message}", status=status or 200, reason="malformed")
    return ProviderError(provider, message, status=status)


def _cause(exc: Exception, sdk: Any) -> Exception | None:
    """The SDK exception to chain to ours. Status errors are not chained: their text quotes the provider's
    message unredacted (which may echo the API key) and would be printed with any traceback; ours carries
    the status and the redacted message."""
    return None if isinstance(exc, sdk.APIStatusError) else exc


def _error_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(exc) or type(exc).__name__


def _schema_instruction(request: LLMRequest) -> str:
    fmt = request.response_format
    assert fmt is not None
    if fmt.json_schema:
        return "Reply with a single JSON object that matches this JSON schema, and nothing else:\n" + json.dumps(fmt.json_schema)
    return "Reply with a single JSON object, and nothing else."


class OpenAIBackend:
    """Chat completions through `openai.AsyncOpenAI`; `base_url` reaches any OpenAI-compatible server."""

    provider = "openai"
    simulated = False

    def __init__(self, config: EngineConfig):
        import openai

        self._sdk = openai
        self.config = config
        quiet_http_loggers()
        key = _api_key(config)
        self._client = LoopLocal(lambda: openai.AsyncOpenAI(
            api_key=key, base_url=config.base_url, timeout=config.timeout, max_retries=0,
            default_headers=config.options.get("headers") or None))

    def reply_identity(self) -> dict[str, Any]:
        """Endpoint and options: part of every cache key of this backend."""
        return _reply_identity(self.config)

    async def send(self, request: LLMRequest, model: str, timeout: float) -> LLMReply:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        kwargs: dict[str, Any] = dict(model=model, messages=messages, temperature=request.temperature, timeout=timeout)
        kwargs["max_completion_tokens" if self.config.options.get("max_completion_tokens") else "max_tokens"] = request.max_tokens
        if request.stop:
            kwargs["stop"] = list(request.stop)
        fmt = request.response_format
        if fmt is not None:
            if fmt.type == "json_schema" and fmt.json_schema and self.config.options.get("native_json_schema", True):
                kwargs["response_format"] = {"type": "json_schema",
                                             "json_schema": {"name": fmt.name, "schema": fmt.json_schema, "strict": False}}
            else:
                kwargs["response_format"] = {"type": "json_object"}
                messages.insert(0, {"role": "system", "content": _schema_instruction(request)})
        try:
            completion = await self._client.get().chat.completions.create(**kwargs)
            choice = completion.choices[0]
            text = choice.message.content or ""
            usage = completion.usage
            details = getattr(usage, "prompt_tokens_details", None) if usage else None
            return LLMReply(
                text=text, model=completion.model or model, provider=self.provider,
                usage=Usage(input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                            output_tokens=getattr(usage, "completion_tokens", 0) or 0,
                            cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0),
                finish_reason=choice.finish_reason,
                parsed=parse_json_reply(text) if fmt is not None else None,
            )
        except Exception as exc:  # every SDK failure is classified below, none is swallowed
            raise _classify(self.provider, exc, self._sdk) from _cause(exc, self._sdk)


class AnthropicBackend:
    """Messages API through `anthropic.AsyncAnthropic`; system messages go to Anthropic's `system` field."""

    provider = "anthropic"
    simulated = False

    def __init__(self, config: EngineConfig):
        import anthropic

        self._sdk = anthropic
        self.config = config
        quiet_http_loggers()
        key = _api_key(config)
        self._client = LoopLocal(lambda: anthropic.AsyncAnthropic(
            api_key=key, base_url=config.base_url, timeout=config.timeout, max_retries=0,
            default_headers=config.options.get("headers") or None))

    def reply_identity(self) -> dict[str, Any]:
        """Endpoint and options: part of every cache key of this backend."""
        return _reply_identity(self.config)

    async def send(self, request: LLMRequest, model: str, timeout: float) -> LLMReply:
        system_parts = [m.content for m in request.messages if m.role == "system"]
        if request.response_format is not None:
            system_parts.append(_schema_instruction(request))
        messages = [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"]
        kwargs: dict[str, Any] = dict(model=model, messages=messages, max_tokens=request.max_tokens, timeout=timeout)
        if system_parts:
            kwargs["system"] = "\n\n".join(system_parts)
        if request.stop:
            kwargs["stop_sequences"] = list(request.stop)
        if self.config.options.get("send_temperature", True):
            # Newer SDK releases dropped the typed argument; the wire field is still accepted by the models that take it.
            kwargs["extra_body"] = {"temperature": request.temperature}
        try:
            message = await self._client.get().messages.create(**kwargs)
            text = "".join(getattr(block, "text", "") for block in message.content if getattr(block, "type", "") == "text")
            usage = message.usage
            cached = (getattr(usage, "cache_read_input_tokens", 0) or 0) if usage else 0
            return LLMReply(
                text=text, model=message.model or model, provider=self.provider,
                usage=Usage(input_tokens=(getattr(usage, "input_tokens", 0) or 0) + cached,
                            output_tokens=getattr(usage, "output_tokens", 0) or 0, cached_tokens=cached),
                finish_reason=message.stop_reason,
                parsed=parse_json_reply(text) if request.response_format is not None else None,
            )
        except Exception as exc:  # every SDK failure is classified below, none is swallowed
            raise _classify(self.provider, exc, self._sdk) from _cause(exc, self._sdk)
