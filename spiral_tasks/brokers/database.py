"""SQLite connections for the embedded broker and result backend.

Each thread gets its own connection to the file (sqlite3 connections must not be
shared between threads without a lock of our own, and Celery acknowledges messages
from its pool threads). Every connection runs in autocommit mode: a single statement
is its own transaction, and the few multi-statement changes say `BEGIN IMMEDIATE`
so they take the write lock up front and wait for it (a deferred transaction that
upgrades to a writer can fail at once with SQLITE_BUSY instead of waiting).

WAL journal: readers never block the writer nor each other, a commit is one append
to the log. `synchronous=NORMAL`: a commit survives the crash of any process (what
the broker must survive); only a power loss may lose the last commits.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: RETURNING (claiming a row and reading it in one statement) needs 3.35.
MIN_SQLITE = (3, 35, 0)
#: Bytes the write-ahead log is cut back to once checkpointed.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
#: How long a writer waits for another one before the statement fails.
BUSY_TIMEOUT_S = 30.0


def check_version() -> None:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise RuntimeError(
            f"the embedded broker needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; "
            f"this Python links {sqlite3.sqlite_version}")


def connect(path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL journal, waiting on locks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread=False only so that `Database.close` may close every thread's
    # connection; each one is otherwise used by its own thread alone.
    connection = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                                 check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    # After a checkpoint, cut the log back to this size: a burst of 1 MiB messages
    # must not leave a log of its own size behind for good.
    connection.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    return connection


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Several statements as one atomic change, holding the write lock throughout."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


class Database:
    """One SQLite file: a connection per thread, the schema created once per process.

    `schema` is a list of idempotent statements (CREATE ... IF NOT EXISTS), run in one
    transaction the first time a thread of this process connects. A forked child
    opens connections of its own: an SQLite handle must not cross a fork.
    """

    def __init__(self, path: Path, schema: list[str],
                 busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        check_version()
        self.path = path
        self._schema = schema
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._forget()

    def _forget(self) -> None:
        self._pid = os.getpid()
        self._local = threading.local()
        self._created = False
        self._all: list[sqlite3.Connection] = []

    @property
    def connection(self) -> sqlite3.Connection:
        """This thread's connection."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._forget()  # the parent's handles are the parent's to close
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self.path, self._busy_timeout_s)
            with self._lock:
                if not self._created:
                    with transaction(connection):
                        for statement in self._schema:
                            connection.execute(statement)
                    self._created = True
                self._all.append(connection)
            self._local.connection = connection
        return connection

    def rows(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row of one statement, run to completion (a statement left half-read
        would keep its transaction, and the write lock or the WAL snapshot, open)."""
        return self.connection.execute(sql, parameters).fetchall()

    def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` inside one write transaction on this thread's connection."""
        with transaction(self.connection) as connection:
            return work(connection)

    def close(self) -> None:
        """Close every thread's connection (each thread reconnects if used again)."""
        with self._lock:
            for connection in self._all:
                connection.close()
            self._forget()
