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
MASK = "[REDACTED]"
# Any run of this many characters of a registered secret is masked (a shorter fragment identifies nothing).
FRAGMENT = 6


class _SecretMatcher:
    """Finds every fragment of FRAGMENT+ characters of any of a set of secrets, in one regex pass.

    Every FRAGMENT-character window of every secret goes into a trie, compiled once into one regex; the union
    of all matching (possibly overlapping) windows is masked. Any fragment of 6 or more
    characters contains a whole window, hence is covered."""

    def __init__(self, secrets: tuple[str, ...]):
        self.secrets = secrets
        windows = {s[i:i + FRAGMENT] for s in secrets for i in range(len(s) - FRAGMENT + 1)}
        # No lookahead: a pattern that starts with an alternation of characters lets the regex engine skip
        # ahead in C; the few windows that overlap a match are then probed one by one.
        self._pattern = re.compile(_trie_regex(sorted(windows))) if windows else None

    def redact(self, text: str) -> str:
        if self._pattern is None:
            return text
        spans: list[list[int]] = []
        search, probe, pos = self._pattern.search, self._pattern.match, 0
        while (found := search(text, pos)) is not None:
            start = found.start()
            end, q = start + FRAGMENT, start + 1
            while q < end:  # every window that starts inside the span so far extends it
                if probe(text, q):
                    end = q + FRAGMENT
                q += 1
            if spans and start <= spans[-1][1]:
                spans[-1][1] = end
            else:
                spans.append([start, end])
            pos = end
        if not spans:
            return text
        out, pos = [], 0
        for start, end in spans:
            out.append(text[pos:start])
            out.append(MASK)
            pos = end
        out.append(text[pos:])
        return "".join(out)


def _trie_regex(words: list[str]) -> str:
    """A regex matching exactly `words` (all of one length), shaped as a trie so each position costs its depth."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})

    def build(node: dict) -> str:
        if not node:
            return ""
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return build(trie)


_matcher = _SecretMatcher(())  # replaced, never mutated, so readers need no lock
_registry_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Mask this value, and any fragment of it of 6+ characters, from now on (e.g. an API key in use)."""
    global _matcher
    if not value or len(value) < FRAGMENT:
        return
    with _registry_lock:
        if value not in _matcher.secrets:
            _matcher = _SecretMatcher(tuple(sorted({*_matcher.secrets, value})))


def redact(text: str) -> str:
    """Mask registered secrets (any 6+ character fragment), key-shaped strings, and secret-looking env values."""
    text = _matcher.redact(text)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(MASK, text)
    for name, value in os.environ.items():
        if value and len(value) >= 8 and any(h in name.upper() for h in _SECRET_ENV_HINTS) and value in text:
            text = text.replace(value, MASK)
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
    text = redact(json.dumps(data, ensure_ascii=False, indent=2, default=str))  # a checkpoint may hold a reply's text
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
