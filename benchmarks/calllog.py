"""Figures from the mock server's JSONL call log: calls and tokens per kind, peak in flight, busy time."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.replies import KINDS


@dataclass
class CallSummary:
    """What a client asked of the server over one window of time."""

    calls: int = 0
    errors: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> {calls, prompt_tokens, completion_tokens}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    peak_in_flight: int = 0
    busy_s: float = 0.0  # time with at least one request in flight
    first_start: float | None = None  # epoch seconds of the first request's arrival
    last_end: float | None = None
    duplicate_prompts: int = 0  # calls whose exact prompt was already sent earlier in the window

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dict(self.__dict__)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a call log (a missing file is an empty log)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarize(records: list[dict[str, Any]], since: float | None = None, until: float | None = None) -> CallSummary:
    """Summarize the records whose request arrived in [since, until]."""
    window = [r for r in records if (since is None or r["t_start"] >= since) and (until is None or r["t_start"] <= until)]
    out = CallSummary(by_kind={k: {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0} for k in KINDS})
    seen: set[str] = set()
    for r in window:
        out.calls += 1
        out.errors += r.get("status") != 200 or bool(r.get("malformed"))
        kind = out.by_kind.setdefault(r.get("kind", "forward"), {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        kind["calls"] += 1
        kind["prompt_tokens"] += r.get("prompt_tokens", 0)
        kind["completion_tokens"] += r.get("completion_tokens", 0)
        out.prompt_tokens += r.get("prompt_tokens", 0)
        out.completion_tokens += r.get("completion_tokens", 0)
        sha = r.get("prompt_sha")
        if sha in seen:
            out.duplicate_prompts += 1
        seen.add(sha)
    if window:
        out.first_start = min(r["t_start"] for r in window)
        out.last_end = max(r["t_end"] for r in window)
        out.peak_in_flight = peak_in_flight(window)
        out.busy_s = busy_time(window)
    return out


def peak_in_flight(records: list[dict[str, Any]]) -> int:
    """The most requests the server held at once (an end at the same instant as a start is counted first)."""
    events = sorted([(r["t_start"], 1) for r in records] + [(r["t_end"], -1) for r in records])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


def busy_time(records: list[dict[str, Any]]) -> float:
    """Length of the union of the requests' intervals: the time the server was working for this client."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted((r["t_start"], r["t_end"]) for r in records):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total
