"""Where a client's CPU goes, from a cProfile dump: own time of each function, bucketed by the package it lives in."""
from __future__ import annotations

import pstats
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK_DIRS = ("textgrad_core", "credit", "tasks", "experiments")
SDK_PACKAGES = ("openai", "httpx", "httpx2", "httpcore", "h11", "anyio", "sniffio", "certifi", "distro", "jiter", "idna")
# "other" is mostly the stdlib `typing` introspection that the SDK's request transform calls (see the top functions).
BUCKETS = ("framework", "benchmark harness", "openai SDK + HTTP", "pydantic", "asyncio + sockets", "other")


def bucket_of(filename: str) -> str:
    """Which bucket a function's file belongs to."""
    path = Path(filename)
    parts = path.parts
    if filename.startswith(str(ROOT)):
        rel = path.relative_to(ROOT).parts
        if rel and rel[0] in FRAMEWORK_DIRS:
            return "framework"
        if rel and rel[0] == "benchmarks":
            return "benchmark harness"
    if "site-packages" in parts:
        package = parts[parts.index("site-packages") + 1] if parts.index("site-packages") + 1 < len(parts) else ""
        if package in SDK_PACKAGES:
            return "openai SDK + HTTP"
        if package.startswith("pydantic"):
            return "pydantic"
        return "other"
    if any(p in ("asyncio", "selectors.py", "socket.py", "ssl.py") for p in parts) or filename.startswith("<built-in method select") \
            or "_overlapped" in filename:
        return "asyncio + sockets"
    return "other"


def split(profile_path: str | Path, calls: int) -> dict[str, object]:
    """CPU ms per call by bucket, and the functions with the most own time."""
    stats = pstats.Stats(str(profile_path))
    totals = {b: 0.0 for b in BUCKETS}
    rows = []
    for (filename, line, func), (cc, nc, tottime, cumtime, callers) in stats.stats.items():  # type: ignore[attr-defined]
        b = bucket_of(filename) if not filename.startswith("~") else _builtin_bucket(func)
        totals[b] += tottime
        rows.append((tottime, cumtime, nc, f"{_short(filename)}:{line}({func})", b))
    rows.sort(reverse=True)
    n = max(calls, 1)
    return {"ms_per_call": {b: 1000 * t / n for b, t in totals.items()}, "total_s": sum(totals.values()),
            "top": [{"function": f, "bucket": b, "own_ms": 1000 * t, "cum_ms": 1000 * c, "ncalls": nc}
                    for t, c, nc, f, b in rows[:15]]}


def _builtin_bucket(func: str) -> str:
    """Built-ins have no file: socket and selector methods count as I/O, the rest as other."""
    if any(k in func for k in ("select", "socket", "send", "recv", "epoll")):
        return "asyncio + sockets"
    if "_ssl" in func:  # the TLS context every SDK client builds, even for plain http
        return "openai SDK + HTTP"
    return "other"


def _short(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    if filename.startswith(str(ROOT)):
        return filename[len(str(ROOT)) + 1:]
    return Path(filename).name if "/" in filename else filename
