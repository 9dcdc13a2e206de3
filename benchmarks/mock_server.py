"""A local OpenAI-compatible chat-completions server for benchmarks: asyncio, 127.0.0.1, many requests at once.

Replies are deterministic functions of the request (see `benchmarks.replies`), latency is fixed or drawn from a
distribution seeded by the request body, and every request is appended to a JSONL log (start, end, kind, tokens,
status, requests in flight) from which `benchmarks.calllog` computes calls, tokens, peak in-flight and busy time.

Run it as a process (the benchmark does, so its CPU is not charged to the client being measured):

    python -m benchmarks.mock_server --latency 0.3 --log calls.jsonl [--error-rate 0.05 --malformed-rate 0.01]

It prints `PORT <n>` on its first stdout line; base URL `http://127.0.0.1:<n>/v1`. `MockServer` starts and stops
such a process from Python.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.replies import approx_tokens, classify, reply_text


@dataclass
class ServerSettings:
    """How the server behaves: latency (seconds), its spread, failure rates and the seed of every draw."""

    latency: float = 0.0
    jitter: str = "fixed"  # "fixed" or "lognormal" (sigma 0.5 around `latency`, seeded by the request body)
    error_rate: float = 0.0  # share of requests answered 500 (drawn in arrival order from `seed`)
    rate_limit_rate: float = 0.0  # share answered 429 with Retry-After: 0.05
    malformed_rate: float = 0.0  # share answered 200 with a body that is not JSON
    seed: int = 0


class _Handler:
    """Serves one connection: HTTP/1.1 with keep-alive, one request at a time per connection (as httpx sends)."""

    def __init__(self, server: "MockHTTPServer"):
        self.server = server

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                status, payload, extra = await self.server.handle(request_line, body)
                head_out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}", "Content-Type: application/json",
                            f"Content-Length: {len(payload)}", "Connection: keep-alive", *extra]
                writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the client closed the connection
        finally:
            writer.close()


_REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


class MockHTTPServer:
    """The asyncio server and its request policy; `log_path` receives one JSON line per request."""

    def __init__(self, settings: ServerSettings, log_path: str | None = None):
        self.settings = settings
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None
        self._draws = random.Random(settings.seed)  # failure draws, in arrival order
        self.in_flight = 0
        self.served = 0

    def _latency(self, body: bytes) -> float:
        if self.settings.jitter == "lognormal" and self.settings.latency > 0:
            seed = int.from_bytes(hashlib.sha256(b"%d:" % self.settings.seed + body).digest()[:8], "big")
            return self.settings.latency * random.Random(seed).lognormvariate(0.0, 0.5)
        return self.settings.latency

    async def handle(self, request_line: str, body: bytes) -> tuple[int, bytes, list[str]]:
        """Answer one request: (status, body, extra header lines)."""
        method, path, _ = (request_line.split(" ") + ["", "", ""])[:3]
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, json.dumps({"error": {"message": f"no route {method} {path}", "type": "invalid_request_error"}}).encode(), []
        start = time.time()
        self.in_flight += 1
        record: dict[str, Any] = {"t_start": start, "in_flight": self.in_flight}
        try:
            request = json.loads(body)
            messages = request.get("messages") or []
            prompt = "\n".join(str(m.get("content") or "") for m in messages)
            kind = classify(messages, request)
            record.update(kind=kind, model=request.get("model"), prompt_chars=len(prompt),
                          prompt_tokens=approx_tokens(prompt), prompt_sha=hashlib.sha256(prompt.encode()).hexdigest()[:16])
            draw = self._draws.random()
            await asyncio.sleep(self._latency(body))
            s = self.settings
            if draw < s.error_rate:
                return self._fail(record, 500, "simulated server error", [])
            if draw < s.error_rate + s.rate_limit_rate:
                return self._fail(record, 429, "simulated rate limit", ["Retry-After: 0.05"])
            if draw < s.error_rate + s.rate_limit_rate + s.malformed_rate:
                record.update(status=200, malformed=True, completion_tokens=0)
                return 200, b"{not json", []
            text = reply_text(kind, messages, request)
            usage = {"prompt_tokens": record["prompt_tokens"], "completion_tokens": approx_tokens(text),
                     "total_tokens": record["prompt_tokens"] + approx_tokens(text)}
            record.update(status=200, completion_tokens=usage["completion_tokens"])
            self.served += 1
            reply = {"id": f"chatcmpl-{self.served}", "object": "chat.completion", "created": int(start),
                     "model": request.get("model") or "mock", "usage": usage,
                     "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                  "message": {"role": "assistant", "content": text}}]}
            return 200, json.dumps(reply).encode(), []
        except ValueError as exc:
            return self._fail(record, 400, f"request body is not JSON: {exc}", [])
        finally:
            self.in_flight -= 1
            record["t_end"] = time.time()
            if self._log is not None:
                self._log.write(json.dumps(record) + "\n")
                self._log.flush()

    @staticmethod
    def _fail(record: dict[str, Any], status: int, message: str, extra: list[str]) -> tuple[int, bytes, list[str]]:
        record.update(status=status, completion_tokens=0)
        return status, json.dumps({"error": {"message": message, "type": "server_error", "code": status}}).encode(), extra

    async def serve(self, port: int = 0, ready: Any = None) -> None:
        """Listen on 127.0.0.1:`port` (0: any free port) until cancelled; `ready(port)` is called once bound."""
        server = await asyncio.start_server(_Handler(self), "127.0.0.1", port, backlog=1024)
        bound = server.sockets[0].getsockname()[1]
        if ready is not None:
            ready(bound)
        async with server:
            await server.serve_forever()


class MockServer:
    """Starts the server as a child process; a context manager yielding itself with `base_url` set."""

    def __init__(self, log_path: str | Path, settings: ServerSettings | None = None):
        self.log_path = str(log_path)
        self.settings = settings or ServerSettings()
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of the running server."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "MockServer":
        """Start the process and wait (at most 20 s) for it to report its port."""
        s = self.settings
        args = [sys.executable, "-m", "benchmarks.mock_server", "--latency", str(s.latency), "--jitter", s.jitter,
                "--error-rate", str(s.error_rate), "--rate-limit-rate", str(s.rate_limit_rate),
                "--malformed-rate", str(s.malformed_rate), "--seed", str(s.seed), "--log", self.log_path]
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=root, env=env)
        deadline = time.monotonic() + 20
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("PORT ") or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"mock server did not start (it printed {line!r})")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> "MockServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--jitter", choices=["fixed", "lognormal"], default="fixed")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", default=None)
    a = parser.parse_args(argv)
    settings = ServerSettings(latency=a.latency, jitter=a.jitter, error_rate=a.error_rate,
                              rate_limit_rate=a.rate_limit_rate, malformed_rate=a.malformed_rate, seed=a.seed)
    server = MockHTTPServer(settings, a.log)
    try:
        asyncio.run(server.serve(a.port, ready=lambda port: print(f"PORT {port}", flush=True)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
