"""A Celery result backend on one SQLite file: the embedded deployment's results.

    result_backend = "spiral-sqlite:///absolute/path/results.sqlite3"

A result is one row, written by one statement (INSERT OR REPLACE), so a producer
polling for it sees no result or the whole result, never a file half written as
with Celery's `file://` backend. Results expire after `result_expires`: expired rows
are invisible at once and deleted by `cleanup` (beat's nightly
`celery.backend_cleanup`) and, so the file stays bounded without beat, by a sweep
at most once a minute from each writing process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from celery.backends.base import KeyValueStoreBackend
from kombu.utils.encoding import bytes_to_str, ensure_bytes

from spiral_tasks.brokers.database import Database
from spiral_tasks.brokers.urls import database_path

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS results (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        expires_at REAL)            -- NULL: kept until deleted""",
    "CREATE INDEX IF NOT EXISTS results_expiry ON results (expires_at) "
    "WHERE expires_at IS NOT NULL",
]

#: Seconds between two sweeps of expired results by one process.
SWEEP_INTERVAL_S = 60.0
#: Keys per SELECT when many results are asked for at once (SQLite caps parameters).
MGET_BATCH = 500


class SQLiteBackend(KeyValueStoreBackend):
    """Task results as rows of one SQLite file, shared by every process."""

    implements_incr = True
    supports_autoexpire = False

    def __init__(self, url: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not url:
            raise ValueError("the SQLite result backend needs a spiral-sqlite://<path> URL")
        self.url = url
        expires = getattr(self, "expires", None)  # result_expires, as Celery prepared it
        self._expires_s = float(expires) if expires else None
        self.db = Database(database_path(url), SCHEMA)
        self._next_sweep = 0.0
        self._sweep_lock = threading.Lock()

    def __reduce__(self, args: tuple[Any, ...] = (),
                   kwargs: dict[str, Any] | None = None) -> Any:
        # As Celery's own backends do, so a pickled backend finds its file again.
        return super().__reduce__(  # type: ignore[call-arg]  # stubs lack the arguments
            args, {**(kwargs or {}), "url": self.url})

    def _expiry(self) -> float | None:
        return None if self._expires_s is None else time.time() + self._expires_s

    @staticmethod
    def _key(key: bytes | str) -> str:
        return bytes_to_str(key)

    def get(self, key: bytes | str) -> bytes | None:
        found = self.db.rows("SELECT value FROM results WHERE key = ? AND "
                             "(expires_at IS NULL OR expires_at > ?)",
                             (self._key(key), time.time()))
        return ensure_bytes(found[0][0]) if found else None

    def mget(self, keys: Iterable[bytes | str]) -> list[bytes | None]:
        wanted = [self._key(k) for k in keys]
        now = time.time()
        found: dict[str, bytes] = {}
        for start in range(0, len(wanted), MGET_BATCH):
            batch = wanted[start:start + MGET_BATCH]
            marks = ",".join("?" * len(batch))
            for key, value in self.db.rows(
                    f"SELECT key, value FROM results WHERE key IN ({marks}) AND "
                    "(expires_at IS NULL OR expires_at > ?)", (*batch, now)):
                found[key] = ensure_bytes(value)
        return [found.get(key) for key in wanted]

    def set(self, key: bytes | str, value: bytes | str) -> None:
        self.db.rows("INSERT OR REPLACE INTO results (key, value, expires_at) "
                     "VALUES (?, ?, ?)", (self._key(key), ensure_bytes(value), self._expiry()))
        self._maybe_sweep()

    def delete(self, key: bytes | str) -> None:
        self.db.rows("DELETE FROM results WHERE key = ?", (self._key(key),))

    def incr(self, key: bytes | str) -> int:
        """Chord counters: atomic, one statement."""
        found = self.db.rows(
            "INSERT INTO results (key, value, expires_at) VALUES (?, '1', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 "
            "AS TEXT) RETURNING value", (self._key(key), self._expiry()))
        return int(found[0][0])

    def expire(self, key: bytes | str, value: float) -> None:
        self.db.rows("UPDATE results SET expires_at = ? WHERE key = ?",
                     (time.time() + float(value), self._key(key)))

    def cleanup(self) -> None:
        """Delete expired results."""
        self.db.rows("DELETE FROM results WHERE expires_at <= ?", (time.time(),))

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep or not self._sweep_lock.acquire(blocking=False):
            return
        try:
            self._next_sweep = now + SWEEP_INTERVAL_S
            self.cleanup()
        finally:
            self._sweep_lock.release()

    def size(self) -> int:
        """Results held, expired or not (for tests and operators)."""
        return int(self.db.rows("SELECT count(*) FROM results")[0][0])
