"""Backends for real providers over their official async SDK clients: OpenAI (and every OpenAI-compatible server) and Anthropic."""
from __future__ import annotations

import datetime
import email.utils
import json
import os
import time
from typing import Any

from textgrad_core.engines.base import TransientProviderError, parse_json_reply
from textgrad_core.engines.clients import preload, sdk, shared_client
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
    """Chat completions through `openai.AsyncOpenAI`; `base_url` reaches any OpenAI-compatible server.

    The request goes out as a prebuilt JSON body through the SDK client's own `post` (its auth, headers, timeout
    and error types; retries off, ours apply): the typed `chat.completions.create` would re-walk the body
    through its TypedDict transform and build a pydantic model of the reply, most of the client's CPU per call."""

    provider = "openai"
    simulated = False

    def __init__(self, config: EngineConfig):
        self.config = config
        quiet_http_loggers()
        self._key = _api_key(config)
        self._client_key = ("openai", _endpoint(config), self._key)
        preload("openai")  # the run's set-up overlaps the SDK import; the first call joins it
        self._sdk: Any = None
        # Per-request headers, so that roles with different headers still share the endpoint's one client.
        headers = config.options.get("headers") or None
        self._request_options: dict[str, Any] = {"headers": dict(headers)} if headers else {}
        self._max_field = "max_completion_tokens" if config.options.get("max_completion_tokens") else "max_tokens"
        self._native_schema = bool(config.options.get("native_json_schema", True))

    def _new_client(self) -> Any:
        return self._sdk.AsyncOpenAI(api_key=self._key, base_url=self.config.base_url, timeout=self.config.timeout,
                                     max_retries=0)

    def reply_identity(self) -> dict[str, Any]:
        """Endpoint and options: part of every cache key of this backend."""
        return _reply_identity(self.config)

    def body(self, request: LLMRequest, model: str) -> dict[str, Any]:
        """The chat-completions JSON body of a request."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {"model": model, "messages": messages, "temperature": request.temperature,
                                self._max_field: request.max_tokens}
        if request.stop:
            body["stop"] = list(request.stop)
        fmt = request.response_format
        if fmt is not None:
            if fmt.type == "json_schema" and fmt.json_schema and self._native_schema:
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": fmt.name, "schema": fmt.json_schema, "strict": False}}
            else:
                body["response_format"] = {"type": "json_object"}
                messages.insert(0, {"role": "system", "content": _schema_instruction(request)})
        return body

    async def send(self, request: LLMRequest, model: str, timeout: float) -> LLMReply:
        body = self.body(request, model)
        if self._sdk is None:
            self._sdk = sdk("openai")
        try:
            client = shared_client(self._client_key, self._new_client)
            data = await client.post("/chat/completions", body=body, cast_to=object,
                                     options={**self._request_options, "timeout": timeout})
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            if not isinstance(text, str):
                raise TypeError(f"message content is a {type(text).__name__}, not text")
            usage = data.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
            return LLMReply.model_construct(
                text=text, parsed=parse_json_reply(text) if request.response_format is not None else None,
                model=data.get("model") or model, provider=self.provider,
                usage=Usage.model_construct(input_tokens=int(usage.get("prompt_tokens") or 0),
                                            output_tokens=int(usage.get("completion_tokens") or 0),
                                            cached_tokens=int(details.get("cached_tokens") or 0)),
                finish_reason=choice.get("finish_reason"), latency_s=0.0, cache_hit=False, cost_usd=0.0,
                unpriced=False)
        except Exception as exc:  # every SDK failure is classified below, none is swallowed
            raise _classify(self.provider, exc, self._sdk) from _cause(exc, self._sdk)


class AnthropicBackend:
    """Messages API through `anthropic.AsyncAnthropic`; system messages go to Anthropic's `system` field."""

    provider = "anthropic"
    simulated = False

    def __init__(self, config: EngineConfig):
        self.config = config
        quiet_http_loggers()
        self._key = _api_key(config)
        self._client_key = ("anthropic", _endpoint(config), self._key)
        preload("anthropic")
        self._sdk: Any = None
        self._headers = dict(config.options.get("headers") or {}) or None  # per request: one client per endpoint

    def _new_client(self) -> Any:
        return self._sdk.AsyncAnthropic(api_key=self._key, base_url=self.config.base_url,
                                        timeout=self.config.timeout, max_retries=0)

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
        if self._headers:
            kwargs["extra_headers"] = self._headers
        if self._sdk is None:
            self._sdk = sdk("anthropic")
        try:
            client = shared_client(self._client_key, self._new_client)
            message = await client.messages.create(**kwargs)
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
