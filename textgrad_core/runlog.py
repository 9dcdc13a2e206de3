"""Append-only JSONL logs of a run, written record by record as events happen."""
from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

# Shapes of provider keys; anything matching is masked before it reaches a file or an error message.
_KEY_PATTERNS = [re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"), re.compile(r"sk-[A-Za-z0-9_\-]{8,}")]
_SECRET_ENV_HINTS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
_registered_secrets: tuple[str, ...] = ()  # longest first; replaced, never mutated, so readers need no lock


def register_secret(value: str) -> None:
    """Mask this exact value from now on (e.g. an API key read from a variable whose name does not look secret)."""
    global _registered_secrets
    if value and len(value) >= 8 and value not in _registered_secrets:
        _registered_secrets = tuple(sorted({*_registered_secrets, value}, key=len, reverse=True))


def redact(text: str) -> str:
    """Mask anything that looks like an API key, registered secrets, and the values of secret-looking environment variables."""
    for value in _registered_secrets:
        if value in text:
            text = text.replace(value, "[REDACTED]")
    for pattern in _KEY_PATTERNS:
        text = pattern.sub("[REDACTED]", text)
    for name, value in os.environ.items():
        if value and len(value) >= 8 and any(h in name.upper() for h in _SECRET_ENV_HINTS) and value in text:
            text = text.replace(value, "[REDACTED]")
    return text


class JsonlLog:
    """Thread-safe JSONL writer: each record is one complete line, flushed when written."""

    def __init__(self, path: str | Path, defaults: dict[str, Any] | None = None):
        self.path = Path(path)
        self.defaults = dict(defaults or {})  # fields every record carries (e.g. simulated=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (timestamped, secrets masked)."""
        record = {"ts": round(time.time(), 3), **self.defaults, **record}
        line = redact(json.dumps(record, ensure_ascii=False, default=str))
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def read(self) -> list[dict[str, Any]]:
        """All records written so far."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
