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

Why a new leader first waits for the callers the last batch answered to wake: an
answer is an event set, and its caller still needs the GIL to act on it. A backend
with no I/O never releases the GIL during a batch, so those callers could stay
unscheduled while batch after batch was cut without them: a leader handed the lead
took the GIL back at once (a `time.sleep(0)` meant to yield it returns before a woken
thread is scheduled), and a leader whose batch left nobody queued stored again at once
and led again, alone, until the 5 ms switch interval took the GIL from it. Their
stores, answered on time, ended late, and their next ones queued late: on the memory
backend, with 50 callers, the p99 of the batches served between a store's answer and
its caller's return was 1-29 (the worst 26-74), and 0 with the wait. Only the memory
backend's tail showed much of it, since LevelDB's and Redis's batches release the GIL
for I/O (see BENCHMARKS.md). A leader, handed the lead or leading afresh, now cuts its
batch once they have woken, waiting on a condition, which releases the GIL to them; a
lone caller never waits. The wait is bounded (`claim_wait_s`), so a caller that cannot
run (held in a debugger, or in a signal handler) costs fairness, never progress.

Waiting for an answer cannot hang: a leader finishes or fails every request it took,
whatever happens (a `LockTimeout` fails the whole batch, with nothing written).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

#: The longest a new leader waits for the callers the last batch answered to take
#: their answers before it cuts its own batch: far above a thread's wake-up (tens of
#: microseconds, a few ms on a loaded machine), so it ends only for a caller that
#: cannot run at all.
CLAIM_WAIT_S = 0.05

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
        #: Whether its caller woke from waiting (answered or made leader); set under
        #: the combiner's guard.
        self._claimed = False

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
                 max_batch: int | None = None, claim_wait_s: float = CLAIM_WAIT_S) -> None:
        """`serve(key, batch)` must answer every request in the batch or raise;
        `max_batch`: at most this many requests per batch (None: all queued);
        `claim_wait_s`: how long a new leader waits at most for the callers the last
        batch answered to wake."""
        self._serve = serve
        self._max_batch = max_batch
        self._claim_wait_s = claim_wait_s
        self._queues: dict[str, deque[Pending[P, R]]] = {}
        self._leaders: set[str] = set()
        self._guard = threading.Lock()
        #: Per key, the waiters the last batch answered whose callers have not woken
        #: yet; the next leader cuts its batch once it is empty (see the module).
        self._unclaimed: dict[str, set[Pending[P, R]]] = {}
        self._claims = threading.Condition(self._guard)

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
                if self._unclaimed:  # (tested first: a lone caller's every store)
                    self._await_claims(key)
        if turn is not None:
            try:
                turn.wait()
            finally:  # woken, or leaving by an exception: either way, not waited for
                self._claim(key, pending)
            if not pending.done:  # handed the lead
                with self._guard:
                    self._await_claims(key)
        if not pending.done:  # this caller leads now
            self._serve_queue(key)
        return pending.outcome()

    def _await_claims(self, key: str) -> None:
        """Called by a new leader, under the guard: the callers the last batch answered
        go first. Also when leading afresh (nobody was queued when that batch ended):
        else its own leader, storing again at once, would serve itself alone, batch
        after batch, never releasing the GIL, while they wait for it."""
        if self._unclaimed.get(key):
            self._claims.wait_for(lambda: not self._unclaimed.get(key),
                                  self._claim_wait_s)

    def _claim(self, key: str, pending: Pending[P, R]) -> None:
        with self._guard:
            pending._claimed = True
            unclaimed = self._unclaimed.get(key)
            if unclaimed is not None and pending in unclaimed:
                unclaimed.discard(pending)
                if not unclaimed:
                    del self._unclaimed[key]
                    self._claims.notify_all()

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
                # A batch of one is its leader's own request, claimed by then.
                unclaimed = {p for p in batch if p._turn is not None
                             and not p._claimed} if len(batch) > 1 else None
                if unclaimed:
                    self._unclaimed[key] = unclaimed
                elif self._unclaimed:
                    self._unclaimed.pop(key, None)
                if queue:  # the oldest waiter leads next, once this batch's have woken
                    turn = queue[0]._turn
                    assert turn is not None, "a queued request not first waits"
                    turn.set()
                else:
                    self._leaders.discard(key)
