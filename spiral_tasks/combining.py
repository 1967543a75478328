"""Flat combining: one thread per tenant goes to the lock and serves everyone queued.

Threads storing into one tenant queue their requests. If no thread of this process is
serving that tenant, the caller becomes its *leader*: it takes the oldest requests
queued, at most `max_batch` of them, enters the tenant's critical section once and
commits the batch (one round trip for many stores). Everyone else just waits for their
answer, without touching the lock. When the leader is done and more requests have
arrived, leadership passes to the oldest waiting request, so no caller serves others
forever.

Why the bound: a batch that takes the whole queue makes whoever arrives just after it
was cut wait for all of it and then for a whole batch of its own, up to twice as many
stores as everyone else. Served oldest first, at most B at a time, a request waits for
the stores queued before it and at most B-1 others; with N callers, at most N-1+B
instead of about 2N (measured with 50 callers: 1.04-1.16x the median count at B=12
against 1.7-3.5x unbounded; see BENCHMARKS.md).

Waiting for an answer cannot hang: a leader finishes or fails every request it took,
whatever happens (a `LockTimeout` fails the whole batch, with nothing written).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

P = TypeVar("P")
R = TypeVar("R")


class Pending(Generic[P, R]):
    """One caller's request and, once served, its result or error."""

    def __init__(self, payload: P) -> None:
        self.payload = payload
        self._result: R | None = None
        self._error: BaseException | None = None
        self._done = False
        #: Set when answered or made leader. Made only for a caller that waits: a
        #: leader serving itself alone (one caller, every store) needs none, and a
        #: request is only ever answered by whoever took it from the queue, under the
        #: guard that made its event.
        self._turn: threading.Event | None = None

    @property
    def done(self) -> bool:
        return self._done

    def finish(self, result: R) -> None:
        self._result, self._done = result, True
        if self._turn is not None:
            self._turn.set()

    def fail(self, error: BaseException) -> None:
        self._error, self._done = error, True
        if self._turn is not None:
            self._turn.set()

    def wait_turn(self) -> threading.Event:
        """The event this request's caller waits on (made under the combiner's guard,
        before anyone can take the request)."""
        turn = self._turn = threading.Event()
        return turn

    def adopt(self, other: Pending[P, R]) -> None:
        """Answer as `other` was answered (a request served on a stand-in first)."""
        if other._error is not None:
            self.fail(other._error)
        else:
            assert other._result is not None, "adopt() of a request never served"
            self.finish(other._result)

    def outcome(self) -> R:
        if self._error is not None:
            raise self._error
        assert self._result is not None, "outcome() before the request was served"
        return self._result


class Combiner(Generic[P, R]):
    def __init__(self, serve: Callable[[str, list[Pending[P, R]]], None],
                 max_batch: int | None = None) -> None:
        """`serve(key, batch)` must answer every request in the batch or raise;
        `max_batch`: at most this many requests per batch (None: all queued)."""
        self._serve = serve
        self._max_batch = max_batch
        self._queues: dict[str, deque[Pending[P, R]]] = {}
        self._leaders: set[str] = set()
        self._guard = threading.Lock()

    def waiting(self, key: str) -> int:
        """How many requests for `key` wait for a leader to take them."""
        with self._guard:
            queue = self._queues.get(key)
            return len(queue) if queue else 0

    def leading(self, key: str) -> bool:
        """Whether a caller is serving `key` now."""
        with self._guard:
            return key in self._leaders

    def run(self, key: str, payload: P) -> R:
        pending: Pending[P, R] = Pending(payload)
        turn = None
        with self._guard:
            self._queues.setdefault(key, deque()).append(pending)
            if key in self._leaders:
                turn = pending.wait_turn()
            else:
                self._leaders.add(key)
        if turn is not None:
            turn.wait()
            if not pending.done:
                # Handed the lead: give the GIL a turn first, so the callers the last
                # batch answered queue again before this batch is taken, not after
                # it (in a process whose backend never waits on I/O, they would
                # otherwise wait for the GIL while batch after batch is served).
                time.sleep(0)
        if not pending.done:  # this caller leads now
            self._serve_queue(key)
        return pending.outcome()

    def _serve_queue(self, key: str) -> None:
        with self._guard:
            queue = self._queues[key]
            if self._max_batch is None or len(queue) <= self._max_batch:
                batch = list(queue)
                queue.clear()
            else:  # the oldest first; the rest lead themselves next
                batch = [queue.popleft() for _ in range(self._max_batch)]
        try:
            self._serve(key, batch)
        except BaseException as exc:
            for pending in batch:
                if not pending.done:
                    pending.fail(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._guard:
                if queue:  # the oldest waiter leads next
                    turn = queue[0]._turn
                    assert turn is not None, "a queued request not first waits"
                    turn.set()
                else:
                    self._leaders.discard(key)
