"""The embedded broker's state in one SQLite file: messages, queues and bindings.

Every change is one SQLite transaction, so no reader ever sees half a message and no
crash leaves half a change behind:

- publish: one INSERT (a fanout: one transaction inserting a row per bound queue);
- claim: the oldest ready row of a queue is marked with its claimant process and a
  fresh claim token, in one UPDATE that fails if another consumer got there first;
- ack: the claimed row is deleted (only if it still carries that token);
- release (reject with requeue, channel closed, claimant dead): the claim is cleared
  and the row is ready again, where it was in the queue;
- take (consumers without acknowledgements: remote-control replies, events): the
  row is deleted as it is read.

A claim names its process (see `process.py`). `reap` clears the claims of processes
that are certainly dead, so a message fetched by a worker that was SIGKILLed is
delivered again (late acks then mean what they say), and it drops the private queues
(auto-delete or exclusive: remote-control mailboxes, event receivers) of dead
processes with their bindings and messages, so nothing grows without bound as
processes come and go. Claims older than the visibility timeout are cleared too, as
Redis does, for a claimant that cannot be judged.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from spiral_tasks.brokers import process
from spiral_tasks.brokers.database import Database

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        payload TEXT NOT NULL,
        holder TEXT,                -- claimant process; NULL: ready
        claim TEXT,                 -- this delivery's token
        claimed_at REAL,
        deliveries INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, holder, id)",
    "CREATE INDEX IF NOT EXISTS messages_held ON messages (holder) WHERE holder IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS queues (
        name TEXT PRIMARY KEY,
        holder TEXT)                -- owner of a private queue; NULL: durable""",
    "CREATE INDEX IF NOT EXISTS queues_held ON queues (holder) WHERE holder IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS bindings (
        exchange TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        pattern TEXT NOT NULL,
        queue TEXT NOT NULL,
        PRIMARY KEY (exchange, routing_key, pattern, queue))""",
    "CREATE INDEX IF NOT EXISTS bindings_queue ON bindings (queue)",
]

#: Seconds between two sweeps for dead claimants by one process.
REAP_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Claimed:
    """A message claimed for one delivery."""

    tag: str
    payload: str
    deliveries: int


@dataclass(frozen=True)
class Binding:
    exchange: str
    routing_key: str
    pattern: str
    queue: str


@dataclass(frozen=True)
class Reaped:
    released: int
    queues_dropped: int


def delivery_tag(row: int, claim: str) -> str:
    return f"{row}.{claim}"


def parse_tag(tag: str) -> tuple[int, str]:
    row, _, claim = tag.partition(".")
    return int(row), claim


class MessageStore:
    """Queues, claims and bindings in one SQLite file, shared by every process."""

    def __init__(self, path: Path, visibility_timeout_s: float = 3600.0,
                 reap_interval_s: float = REAP_INTERVAL_S) -> None:
        self.db = Database(path, SCHEMA)
        self.visibility_timeout_s = visibility_timeout_s
        self.reap_interval_s = reap_interval_s
        self._next_reap = 0.0
        self._reap_lock = threading.Lock()

    # --- messages -------------------------------------------------------------------

    def publish(self, queue: str, payload: str) -> None:
        self.db.rows("INSERT INTO messages (queue, payload) VALUES (?, ?)", (queue, payload))

    def publish_many(self, queues: Iterable[str], payload: str) -> None:
        """One copy per queue, all in one transaction."""
        rows = [(queue, payload) for queue in queues]
        if rows:
            self.db.run(lambda c: c.executemany(
                "INSERT INTO messages (queue, payload) VALUES (?, ?)", rows))

    def _oldest_ready(self, queue: str) -> int | None:
        # A plain read first: an empty queue costs no write lock.
        found = self.db.rows("SELECT id FROM messages WHERE queue = ? AND holder IS NULL "
                             "ORDER BY id LIMIT 1", (queue,))
        return int(found[0][0]) if found else None

    def claim(self, queue: str) -> Claimed | None:
        """Claim the oldest ready message of `queue` for this process."""
        holder = str(process.current())
        while (row := self._oldest_ready(queue)) is not None:
            token = secrets.token_hex(8)
            got = self.db.rows(
                "UPDATE messages SET holder = ?, claim = ?, claimed_at = ?, "
                "deliveries = deliveries + 1 WHERE id = ? AND holder IS NULL "
                "RETURNING payload, deliveries", (holder, token, time.time(), row))
            if got:
                return Claimed(delivery_tag(row, token), got[0][0], got[0][1])
            # Another consumer claimed it between the read and the update: next one.
        return None

    def take(self, queue: str) -> str | None:
        """Remove and return the oldest ready message of `queue` (no acknowledgement)."""
        while (row := self._oldest_ready(queue)) is not None:
            got = self.db.rows("DELETE FROM messages WHERE id = ? AND holder IS NULL "
                               "RETURNING payload", (row,))
            if got:
                return str(got[0][0])
        return None

    def ack(self, tag: str) -> None:
        """The delivery succeeded: the message is gone. A tag whose claim was cleared
        meanwhile (its process judged dead, or past the visibility timeout) deletes
        nothing: the message is someone else's now."""
        self.db.rows("DELETE FROM messages WHERE id = ? AND claim = ?", parse_tag(tag))

    def release(self, tag: str) -> None:
        """Put a claimed message back, at its old place in its queue."""
        self.db.rows("UPDATE messages SET holder = NULL, claim = NULL, claimed_at = NULL "
                     "WHERE id = ? AND claim = ?", parse_tag(tag))

    def size(self, queue: str) -> int:
        """Ready messages of `queue` (claimed ones are not counted, as on AMQP)."""
        return int(self.db.rows("SELECT count(*) FROM messages WHERE queue = ? AND "
                                "holder IS NULL", (queue,))[0][0])

    def purge(self, queue: str) -> int:
        """Remove the ready messages of `queue`; claimed ones stay with their holders."""
        return len(self.db.rows("DELETE FROM messages WHERE queue = ? AND holder IS NULL "
                                "RETURNING id", (queue,)))

    def counts(self) -> dict[str, int]:
        """Ready and claimed messages, queues and bindings: what a test or an operator
        checks to see that nothing is left behind."""
        ready, claimed = self.db.rows(
            "SELECT count(*) - count(holder), count(holder) FROM messages")[0]
        queues = self.db.rows("SELECT count(*) FROM queues")[0][0]
        bindings = self.db.rows("SELECT count(*) FROM bindings")[0][0]
        return {"ready": ready, "claimed": claimed, "queues": queues, "bindings": bindings}

    def by_queue(self) -> dict[str, tuple[int, int]]:
        """queue -> (ready, claimed) messages, for every queue holding any."""
        return {queue: (ready, claimed) for queue, ready, claimed in self.db.rows(
            "SELECT queue, count(*) - count(holder), count(holder) FROM messages "
            "GROUP BY queue")}

    def queue_names(self) -> set[str]:
        return {row[0] for row in self.db.rows("SELECT name FROM queues")}

    # --- queues and bindings --------------------------------------------------------

    def declare_queue(self, name: str, private: bool) -> None:
        """A durable queue outlives every process; a private one (auto-delete or
        exclusive) belongs to the process declaring it and goes when it dies."""
        holder = str(process.current()) if private else None
        self.db.rows("INSERT INTO queues (name, holder) VALUES (?, ?) ON CONFLICT (name) "
                     "DO UPDATE SET holder = excluded.holder", (name, holder))

    def has_queue(self, name: str) -> bool:
        return bool(self.db.rows("SELECT 1 FROM queues WHERE name = ?", (name,)))

    def delete_queue(self, name: str) -> None:
        """The queue, its bindings and its messages (claimed ones too: a claim on a
        deleted queue could never be acknowledged anywhere useful)."""
        def drop(connection: sqlite3.Connection) -> None:
            for table in ("messages", "bindings"):
                connection.execute(f"DELETE FROM {table} WHERE queue = ?", (name,))
            connection.execute("DELETE FROM queues WHERE name = ?", (name,))
        self.db.run(drop)

    def bind(self, binding: Binding) -> None:
        self.db.rows("INSERT OR IGNORE INTO bindings (exchange, routing_key, pattern, queue) "
                     "VALUES (?, ?, ?, ?)", (binding.exchange, binding.routing_key,
                                             binding.pattern, binding.queue))

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        self.db.rows("DELETE FROM bindings WHERE exchange = ? AND routing_key = ? AND "
                     "queue = ?", (exchange, routing_key, queue))

    def table(self, exchange: str) -> list[Binding]:
        return [Binding(*row) for row in self.db.rows(
            "SELECT exchange, routing_key, pattern, queue FROM bindings WHERE exchange = ?",
            (exchange,))]

    # --- dead claimants -------------------------------------------------------------

    def maybe_reap(self) -> Reaped | None:
        """`reap`, at most once per interval per process."""
        now = time.monotonic()
        if now < self._next_reap or not self._reap_lock.acquire(blocking=False):
            return None
        try:
            self._next_reap = now + self.reap_interval_s
            return self.reap()
        finally:
            self._reap_lock.release()

    def reap(self) -> Reaped:
        """Release the claims and drop the private queues of dead processes, and
        release claims older than the visibility timeout."""
        holders = {row[0] for row in self.db.rows(
            "SELECT DISTINCT holder FROM messages WHERE holder IS NOT NULL "
            "UNION SELECT DISTINCT holder FROM queues WHERE holder IS NOT NULL")}
        dead = [holder for holder in holders if process.is_dead(holder)]
        released = dropped = 0
        for holder in dead:
            released += len(self.db.rows(
                "UPDATE messages SET holder = NULL, claim = NULL, claimed_at = NULL "
                "WHERE holder = ? RETURNING id", (holder,)))
            dropped += self._drop_queues_of(holder)
        released += len(self.db.rows(
            "UPDATE messages SET holder = NULL, claim = NULL, claimed_at = NULL "
            "WHERE holder IS NOT NULL AND claimed_at < ? RETURNING id",
            (time.time() - self.visibility_timeout_s,)))
        return Reaped(released, dropped)

    def _drop_queues_of(self, holder: str) -> int:
        def drop(connection: sqlite3.Connection) -> int:
            owned = "SELECT name FROM queues WHERE holder = ?"
            for table in ("messages", "bindings"):
                connection.execute(f"DELETE FROM {table} WHERE queue IN ({owned})", (holder,))
            return connection.execute("DELETE FROM queues WHERE holder = ?", (holder,)).rowcount
        return self.db.run(drop)

    def close(self) -> None:
        self.db.close()


_shared: dict[tuple[Path, float], MessageStore] = {}
_shared_lock = threading.Lock()


def shared_store(path: Path, visibility_timeout_s: float = 3600.0) -> MessageStore:
    """One store per file and process, whatever number of kombu connections use it
    (Celery opens several: consumer, producer pool, events, remote control)."""
    key = (path.resolve(), visibility_timeout_s)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = MessageStore(key[0], visibility_timeout_s)
        return _shared[key]
