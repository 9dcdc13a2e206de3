"""Keep the SDKs' per-request HTTP logging off the console, and let a run send it to its own log file.

httpx logs one INFO line per request ("HTTP Request: POST ... 200 OK"); with any root handler at INFO (Hydra
installs one) that is one console line per LLM call. The engines never configure the root logger; they only
raise these loggers to WARNING when nobody has given them a level, and `route_http_logs` hands them to a
handler of the caller's choosing (e.g. the run's run.log) without the console seeing them.
"""
from __future__ import annotations

import logging

# httpx/httpcore ship under these names, and as httpx2/httpcore2 in some environments.
HTTP_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "anthropic")


def quiet_http_loggers() -> None:
    """Raise the HTTP client loggers to WARNING unless someone already chose their level."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def route_http_logs(handler: logging.Handler, level: int = logging.INFO) -> None:
    """Send the HTTP client loggers at `level` to `handler` only (not to the root logger's console handlers)."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        if handler not in logger.handlers:
            logger.addHandler(handler)


def unroute_http_logs(handler: logging.Handler) -> None:
    """Detach `handler` from the HTTP client loggers (at the end of a run); they go quiet again."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        if not logger.handlers:
            logger.propagate = True
            logger.setLevel(logging.WARNING)
