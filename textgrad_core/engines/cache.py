"""Persistent request cache in SQLite: shared across processes, safe under concurrent writers."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from textgrad_core.engines.types import LLMReply
from textgrad_core.errors import CacheError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    reply TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now')),
    PRIMARY KEY (namespace, key)
)
"""


class RequestCache:
    """Maps a request's canonical hash to its reply; one file may serve many processes."""

    def __init__(self, path: str | Path, namespace: str = "default"):
        self.path = Path(path).expanduser()
        self.namespace = namespace
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.execute("SELECT count(*) FROM replies WHERE 0").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"The request cache at {self.path} cannot be read ({exc}). It was left untouched: "
                "move or delete the file yourself, point engine.cache.path elsewhere, or set engine.cache.enabled=false."
            ) from exc

    def get(self, key: str) -> LLMReply | None:
        """The cached reply for a key, if any."""
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT reply FROM replies WHERE namespace=? AND key=?", (self.namespace, key)
                ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"Reading the request cache at {self.path} failed: {exc}") from exc
        if row is None:
            return None
        try:
            return LLMReply.model_validate_json(row[0])
        except ValueError as exc:
            raise CacheError(
                f"A cached reply in {self.path} is unreadable ({exc}); the file was left untouched. "
                "Move it away or set engine.cache.enabled=false."
            ) from exc

    def put(self, key: str, reply: LLMReply) -> None:
        """Store a reply; the first writer of a key wins, so concurrent writers agree."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR IGNORE INTO replies(namespace, key, reply) VALUES (?, ?, ?)",
                    (self.namespace, key, reply.model_dump_json()),
                )
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"Writing the request cache at {self.path} failed: {exc}") from exc

    def backfill(self, records: list[dict]) -> int:
        """Store the replies of logged calls that never reached the cache (a run killed between its call log and
        its cache write); returns how many were put back. Entries already present are left as they are."""
        added = 0
        for r in records:
            key = r.get("cache_key")
            if not key or r.get("error") is not None or r.get("cache_hit") or r.get("reply") is None:
                continue
            if self.get(key) is None:
                self.put(key, LLMReply(text=r["reply"], model=r["model"], provider=r["provider"],
                                       usage=r.get("usage") or {}, finish_reason=r.get("finish_reason")))
                added += 1
        return added

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM replies WHERE namespace=?", (self.namespace,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
