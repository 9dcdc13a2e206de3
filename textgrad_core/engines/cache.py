"""Persistent request cache in SQLite: shared across processes, safe under concurrent writers.

Claims: a process about to pay for a prompt first claims its key (a row in `claims`: key, owner host:pid:token,
expiry). Another process that misses the same key while the claim stands waits for the owner's reply row
(polling with backoff) instead of paying again; a claim whose owner died (same host, no such process) or whose
expiry passed is taken over, so a crash never blocks anyone for longer than the claim's expiry.
"""
from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from textgrad_core.engines.types import LLMReply
from textgrad_core.errors import CacheError
from textgrad_core.runlog import redact

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    reply TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now')),
    PRIMARY KEY (namespace, key)
)
"""
_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (namespace, key)
)
"""
_HOST = socket.gethostname()
_owners: dict[int, str] = {}


def claim_owner() -> str:
    """This process's owner id, host:pid:token (the token tells it from an earlier process with the same pid;
    a forked child gets its own)."""
    pid = os.getpid()
    owner = _owners.get(pid)
    if owner is None:
        owner = _owners[pid] = f"{_HOST}:{pid}:{uuid.uuid4().hex[:12]}"
    return owner
POLL_FIRST_S, POLL_MAX_S = 0.01, 0.2


def owner_alive(owner: str) -> bool:
    """False when the claim's owner is known dead: a process of this host that no longer runs (or an earlier
    process with our pid); another host's owner counts as alive until its claim expires."""
    host, _, rest = owner.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != _HOST or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return owner == claim_owner()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


_SETUP_PATIENCE_S = 30.0


def _set_up(db: sqlite3.Connection) -> None:
    """Switch to WAL and create the tables. Two processes opening a fresh file at once can get SQLITE_BUSY from
    the journal-mode switch without SQLite's busy handler being consulted, so "locked"/"busy" is retried here,
    bounded in time; any other error (a file that is not a database) is raised at once."""
    deadline = time.monotonic() + _SETUP_PATIENCE_S
    pause = 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            db.execute(_CLAIMS)
            db.execute("SELECT count(*) FROM replies WHERE 0").fetchone()
            return
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)


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
            _set_up(self._db)
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
                    (self.namespace, key, redact(reply.model_dump_json())),  # a reply may echo a key
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

    def claim(self, key: str, ttl: float) -> tuple[str, float] | None:
        """Claim `key` for this process for `ttl` seconds: None when it is ours now, else the live foreign claim
        (owner, expiry as a Unix time) that already holds it. Expired and dead owners' claims are taken over."""
        now = time.time()
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")  # read and write as one step: two claimers never both win
                try:
                    row = self._db.execute("SELECT owner, expires FROM claims WHERE namespace=? AND key=?",
                                           (self.namespace, key)).fetchone()
                    held = row is not None and row[0] != claim_owner() and row[1] > now and owner_alive(row[0])
                    if not held:
                        self._db.execute("INSERT OR REPLACE INTO claims(namespace, key, owner, expires) "
                                         "VALUES (?, ?, ?, ?)", (self.namespace, key, claim_owner(), now + ttl))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            return (row[0], row[1]) if held else None
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"Claiming a request in the cache at {self.path} failed: {exc}") from exc

    def release(self, key: str) -> None:
        """Drop this process's claim on `key` (after its reply is stored, or its call failed)."""
        try:
            with self._lock:
                self._db.execute("DELETE FROM claims WHERE namespace=? AND key=? AND owner=?",
                                 (self.namespace, key, claim_owner()))
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"Releasing a claim in the cache at {self.path} failed: {exc}") from exc

    def _claim_standing(self, key: str, owner: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT owner, expires FROM claims WHERE namespace=? AND key=?",
                                   (self.namespace, key)).fetchone()
        return row is not None and row[0] == owner and row[1] > time.time() and owner_alive(owner)

    async def wait_for_reply(self, key: str, owner: str, until: float) -> LLMReply | None:
        """Wait for the reply another process (`owner`) is fetching: the stored reply, or None once its claim is
        gone (released without a reply, expired, owner dead) or the Unix time `until` has passed."""
        delay = POLL_FIRST_S
        while True:
            reply = self.get(key)
            if reply is not None:
                return reply
            if time.time() >= until or not self._claim_standing(key, owner):
                return self.get(key)  # the owner may have stored it just before releasing
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX_S)

    def open_claims(self) -> int:
        """How many claims of this namespace stand (expired ones included), for tests and diagnostics."""
        with self._lock:
            return self._db.execute("SELECT count(*) FROM claims WHERE namespace=?", (self.namespace,)).fetchone()[0]

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM replies WHERE namespace=?", (self.namespace,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
