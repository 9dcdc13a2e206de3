"""A local fake LLM provider for tests: speaks OpenAI chat completions and
Anthropic messages over real HTTP, so the real SDK clients can be pointed at it.

Standard library only. Binds 127.0.0.1 on a random free port and serves from a
background thread (one handler thread per connection).

    server = ProviderServer().start()
    openai.OpenAI(api_key="k", base_url=server.openai_base_url)        # .../v1
    anthropic.Anthropic(api_key="k", base_url=server.anthropic_base_url)
    server.script(Status(429, retry_after=1), Reply("hi"))              # one per request
    server.default = Status(500)                                       # every later one
    server.stop()

Routes: ``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages``
(Anthropic). Any other path gets a 404 in OpenAI's error format.

What a request gets, in this order: the next scripted behaviour; else, when
``server.faults`` is set, a fault drawn at the mix's rates; else ``server.default``.

Behaviours: ``Reply`` (a completion; ``Reply("")`` is an empty content),
``Status`` (an error status with the provider's error body, optional
Retry-After), ``Malformed`` (200 with a body that is not JSON), ``Truncated``
(200 whose JSON body is cut in half, well framed), ``Drop`` (the socket is
closed without any reply: a dropped connection).

Faults at seeded rates (each in [0, 1], their sum at most 1):

    server.faults = FaultMix(rate_429=0.05, rate_500=0.02, rate_503=0.0, rate_drop=0.01,
                             rate_truncated=0.05, rate_empty=0.0, retry_after=0.01, seed=1)

The draw for a request is a hash of (seed, the request body, how many times this
same body arrived before): the same run meets the same faults whatever the
arrival order under concurrency, and a retry of a request gets a fresh draw.
``server.faults = None`` turns them off.

Replies come from ``server.reply_fn(body) -> str`` when set (make it a function
of the request for deterministic end-to-end runs), else ``"echo: <last user
message>"``.

Records: ``server.requests`` holds every request received, in arrival order:
``{"n", "path", "query", "method", "provider", "headers", "json", "t",
"outcome", "status", "reply"}`` where ``outcome`` is ``reply`` (a complete,
non-empty completion was sent; ``reply`` is its text), ``empty``, ``status``
(``status`` holds the code), ``malformed``, ``truncated``, ``drop`` or
``not_found``. ``server.answered()`` lists the ``reply`` records: what a client
that kept every answer must have logged. ``server.outcomes()`` counts outcomes.

Standalone (for end-to-end runs through ``engine.base_url``):

    python tests/provider_server.py --port 8765 --rate-429 0.05 --rate-truncated 0.05 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Union

__all__ = ["ProviderServer", "Reply", "Status", "Malformed", "Truncated", "Drop", "FaultMix", "Behaviour",
           "last_user_text"]


# --------------------------------------------------------------------------- behaviours


@dataclass
class Reply:
    """A normal completion.

    text: reply text; None -> ``server.reply_fn(request_json)`` if set, else
      ``"echo: <last user message text>"``.
    delay: seconds to wait before answering (concurrency overlap, client timeouts).
    input_tokens: total prompt tokens, *including* cached ones. OpenAI gets it as
      ``prompt_tokens``; Anthropic (whose ``input_tokens`` excludes cache reads) gets
      ``input_tokens - cached_tokens`` plus ``cache_read_input_tokens=cached_tokens``.
    truncated: finish as if the token limit was hit (``finish_reason="length"`` /
      ``stop_reason="max_tokens"``) instead of a normal stop.
    """

    text: Optional[str] = None
    delay: float = 0.0
    input_tokens: int = 11
    output_tokens: int = 7
    cached_tokens: int = 0
    truncated: bool = False


@dataclass
class Status:
    """An error response with the provider's error JSON body and status ``code``.

    ``retry_after`` (seconds) is sent as a ``Retry-After`` header when given; a
    string is sent verbatim (an HTTP-date, or garbage).
    """

    code: int
    retry_after: Optional[Union[float, str]] = None
    message: str = "simulated provider error"
    delay: float = 0.0


@dataclass
class Malformed:
    """HTTP 200, ``Content-Type: application/json``, but a body that is not valid JSON."""

    body: str = "{not json"
    delay: float = 0.0


@dataclass
class Truncated:
    """HTTP 200 with a correct Content-Length, but the completion's JSON body is cut in half."""

    delay: float = 0.0


@dataclass
class Drop:
    """Read the request, then close the connection without sending anything."""

    delay: float = 0.0


Behaviour = Union[Reply, Status, Malformed, Truncated, Drop]


@dataclass
class FaultMix:
    """Faults at seeded per-request rates; see the module docstring."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    rate_truncated: float = 0.0
    rate_empty: float = 0.0
    retry_after: Optional[float] = 0.01  # seconds, sent with every 429 (None: no header)
    seed: int = 0

    def __post_init__(self) -> None:
        rates = [self.rate_429, self.rate_500, self.rate_503, self.rate_drop, self.rate_truncated, self.rate_empty]
        if any(r < 0 or r > 1 for r in rates) or sum(rates) > 1 + 1e-9:
            raise ValueError(f"FaultMix rates must be in [0, 1] and sum to at most 1, got {rates}")

    def draw(self, body_digest: str, repeat: int) -> Optional[Behaviour]:
        """The fault for the `repeat`-th arrival of a request body, or None for a normal reply."""
        digest = hashlib.sha256(f"{self.seed}\x1f{body_digest}\x1f{repeat}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        for rate, behaviour in ((self.rate_429, lambda: Status(429, retry_after=self.retry_after, message="rate limited")),
                                (self.rate_500, lambda: Status(500, message="internal error")),
                                (self.rate_503, lambda: Status(503, message="overloaded")),
                                (self.rate_drop, Drop), (self.rate_truncated, Truncated),
                                (self.rate_empty, lambda: Reply(text=""))):
            if u < rate:
                return behaviour()
            u -= rate
        return None


# --------------------------------------------------------------------------- helpers


def _content_text(content: Any) -> str:
    """Text of an OpenAI/Anthropic message ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return ""


def last_user_text(body: Any) -> str:
    """Text of the last ``role == "user"`` message in a request body ('' if none)."""
    if not isinstance(body, dict):
        return ""
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return _content_text(msg.get("content"))
    return ""


_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _openai_error(code: int, message: str) -> dict:
    etype, ecode = _OPENAI_ERROR_TYPES.get(code, ("server_error" if code >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": etype, "param": None, "code": ecode}}


def _anthropic_error(code: int, message: str, request_id: str) -> dict:
    etype = _ANTHROPIC_ERROR_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}


# --------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs; we always send Content-Length
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    server: "_HTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.server.provider._handle(self)

    def do_GET(self) -> None:  # noqa: N802
        self.server.provider._handle(self)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    provider: "ProviderServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out close the socket mid-reply; that is expected here.
        pass


class ProviderServer:
    """Fake OpenAI + Anthropic endpoint. See module docstring."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.peak_in_flight: int = 0
        self.in_flight: int = 0
        self.default: Behaviour = Reply()
        self.reply_fn: Optional[Callable[[dict], str]] = None
        self.faults: Optional[FaultMix] = None
        self.openai_base_url: str = ""
        self.anthropic_base_url: str = ""
        self.port: int = 0
        self._lock = threading.Lock()
        self._queue: collections.deque[Behaviour] = collections.deque()
        self._seen: collections.Counter[str] = collections.Counter()  # arrivals per request body, for FaultMix
        self._wake = threading.Event()  # set to cut pending delays short (reset/stop)
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # ---- lifecycle

    def start(self, port: int = 0) -> "ProviderServer":
        if self._httpd is not None:
            return self
        httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        httpd.provider = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.anthropic_base_url = f"http://127.0.0.1:{self.port}"
        self.openai_base_url = f"{self.anthropic_base_url}/v1"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="provider-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._wake.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "ProviderServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- scripting

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours, consumed one per request in order; then ``default``."""
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Clear recorded requests, the behaviour queue, the fault mix and ``peak_in_flight``.

        Also cuts short the delays of requests still being handled (e.g. left over from
        a client timeout), so they do not overlap the next test.
        """
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self._seen.clear()
            self.faults = None
            self._wake.set()
            self._wake = threading.Event()
            self.peak_in_flight = 0

    def answered(self) -> list[dict]:
        """The records of requests that got a complete, non-empty completion."""
        with self._lock:
            return [r for r in self.requests if r.get("outcome") == "reply"]

    def outcomes(self) -> dict[str, int]:
        """How many requests got each outcome (reply, empty, status, malformed, truncated, drop, not_found)."""
        with self._lock:
            return dict(collections.Counter(r.get("outcome") or "pending" for r in self.requests))

    def _next_behaviour(self, raw: bytes) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self.faults is not None:
                digest = hashlib.sha256(raw).hexdigest()
                repeat = self._seen[digest]
                self._seen[digest] += 1
                fault = self.faults.draw(digest, repeat)
                if fault is not None:
                    return fault
            return self.default

    def _record(self, record: dict, outcome: str, status: Optional[int] = None, reply: Optional[str] = None) -> None:
        with self._lock:
            record.update(outcome=outcome, status=status, reply=reply)

    # ---- request handling

    def _handle(self, h: _Handler) -> None:
        path, _, query = h.path.partition("?")
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in h.headers.items()}

        if h.command == "POST" and path.rstrip("/").endswith("/chat/completions"):
            provider = "openai"
        elif h.command == "POST" and path.rstrip("/").endswith("/messages"):
            provider = "anthropic"
        else:
            provider = None

        record = {"path": path, "query": query, "method": h.command, "provider": provider, "headers": headers,
                  "json": body, "t": time.monotonic(),  # arrival time, e.g. the gap between a 429 and its retry
                  "outcome": None, "status": None, "reply": None}
        with self._lock:
            record["n"] = len(self.requests)
            self.requests.append(record)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            wake = self._wake
        try:
            if provider is None:
                self._record(record, "not_found", 404)
                self._send(h, 404, _openai_error(404, f"unknown route {h.command} {path}"))
                return
            behaviour = self._next_behaviour(raw)
            if behaviour.delay > 0:
                wake.wait(behaviour.delay)
            if isinstance(behaviour, Reply):
                text = behaviour.text if behaviour.text is not None else self._text(body)
                self._record(record, "reply" if text else "empty", 200, text)  # before sending: no race with readers
                self._reply(h, provider, behaviour, body, text)
            elif isinstance(behaviour, Status):
                self._record(record, "status", behaviour.code)
                self._status(h, provider, behaviour)
            elif isinstance(behaviour, Malformed):
                self._record(record, "malformed", 200)
                self._send_raw(h, 200, behaviour.body.encode("utf-8"), {})
            elif isinstance(behaviour, Truncated):
                text = self._text(body)
                self._record(record, "truncated", 200, text)
                data = json.dumps(self._payload(provider, Reply(text), body, text)).encode("utf-8")
                self._send_raw(h, 200, data[: len(data) // 2], {})
            elif isinstance(behaviour, Drop):
                self._record(record, "drop")
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
            else:  # pragma: no cover - misuse
                raise TypeError(f"unknown behaviour {behaviour!r}")
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        finally:
            with self._lock:
                self.in_flight -= 1

    def _text(self, body: Any) -> str:
        """The reply text for a request: reply_fn's, else an echo of its last user message."""
        if self.reply_fn is not None:
            return self.reply_fn(body if isinstance(body, dict) else {})
        return "echo: " + last_user_text(body)

    def _reply(self, h: _Handler, provider: str, r: Reply, body: Any, text: str) -> None:
        """Send a completion of `text`."""
        headers = {"x-request-id" if provider == "openai" else "request-id": "req_" + uuid.uuid4().hex[:24]}
        self._send(h, 200, self._payload(provider, r, body, text), headers)

    @staticmethod
    def _payload(provider: str, r: Reply, body: Any, text: str) -> dict:
        model = body.get("model") if isinstance(body, dict) and body.get("model") else "test-model"
        if provider == "openai":
            return {
                "id": "chatcmpl-" + uuid.uuid4().hex[:24],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                        "logprobs": None,
                        "finish_reason": "length" if r.truncated else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": r.input_tokens,
                    "completion_tokens": r.output_tokens,
                    "total_tokens": r.input_tokens + r.output_tokens,
                    "prompt_tokens_details": {"cached_tokens": r.cached_tokens, "audio_tokens": 0},
                    "completion_tokens_details": {
                        "reasoning_tokens": 0,
                        "audio_tokens": 0,
                        "accepted_prediction_tokens": 0,
                        "rejected_prediction_tokens": 0,
                    },
                },
                "service_tier": "default",
                "system_fingerprint": None,
            }
        return {
                "id": "msg_" + uuid.uuid4().hex[:24],
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "max_tokens" if r.truncated else "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": max(r.input_tokens - r.cached_tokens, 0),
                    "output_tokens": r.output_tokens,
                    "cache_read_input_tokens": r.cached_tokens,
                    "cache_creation_input_tokens": 0,
                },
            }

    def _status(self, h: _Handler, provider: str, s: Status) -> None:
        req_id = "req_" + uuid.uuid4().hex[:24]
        extra: dict[str, str] = {}
        if s.retry_after is not None:
            ra = s.retry_after
            if isinstance(ra, str):
                extra["Retry-After"] = ra
            else:
                extra["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        if provider == "openai":
            extra["x-request-id"] = req_id
            self._send(h, s.code, _openai_error(s.code, s.message), extra)
        else:
            extra["request-id"] = req_id
            self._send(h, s.code, _anthropic_error(s.code, s.message, req_id), extra)

    def _send(self, h: _Handler, code: int, payload: Any, headers: Optional[dict] = None) -> None:
        self._send_raw(h, code, json.dumps(payload).encode("utf-8"), headers or {})

    @staticmethod
    def _send_raw(h: _Handler, code: int, data: bytes, headers: dict) -> None:
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()


def main(argv: Optional[list[str]] = None) -> None:
    """Serve until interrupted, with the fault mix given on the command line (always on 127.0.0.1)."""
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic provider with seeded faults.")
    parser.add_argument("--port", type=int, default=0)
    for name in ("429", "500", "503", "drop", "truncated", "empty"):
        parser.add_argument(f"--rate-{name}", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server = ProviderServer()
    server.faults = FaultMix(rate_429=args.rate_429, rate_500=args.rate_500, rate_503=args.rate_503,
                             rate_drop=args.rate_drop, rate_truncated=args.rate_truncated, rate_empty=args.rate_empty,
                             retry_after=args.retry_after, seed=args.seed)
    server.start(args.port)
    print(f"serving on {server.openai_base_url} (OpenAI) and {server.anthropic_base_url} (Anthropic)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
