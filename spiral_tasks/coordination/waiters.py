"""The threads of this process waiting for a tenant's lock, so a holder that lets the
lock go and means to take it again (a GC run between two holds) can let them in first.

Staying away from the lock for a fixed time was not enough: a waiter must be woken and
scheduled (and, in Python, get the GIL) before it can take the lock, and on a machine
whose other processes keep the cores busy that took longer than the 1 ms the run
stayed away, so the run took the lock again first and a store sat out hold after hold.
A holder that knows who waits can wait for exactly them instead: for the waiters there
when it let the lock go (each gets a ticket), not for those that came later, so a
stream of new stores cannot keep it out for ever; and no longer than its caller's
bound, so a waiter descheduled for long costs the holder that bound, not its budget.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager


class Waiters:
    """Tickets of the threads waiting for each tenant's lock."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._tickets = itertools.count(1)
        self._waiting: dict[str, set[int]] = {}

    @contextmanager
    def waiting(self, tenant: str) -> Iterator[None]:
        """Counts the caller as waiting for `tenant`'s lock until it has taken it (or
        given up): enter it only once a first try found the lock taken."""
        with self._changed:
            ticket = next(self._tickets)
            self._waiting.setdefault(tenant, set()).add(ticket)
        try:
            yield
        finally:
            with self._changed:
                tickets = self._waiting[tenant]
                tickets.discard(ticket)
                if not tickets:
                    del self._waiting[tenant]
                self._changed.notify_all()

    def count(self, tenant: str) -> int:
        """How many threads wait for `tenant`'s lock now."""
        with self._changed:
            return len(self._waiting.get(tenant, ()))

    def let_in(self, tenant: str, until: float) -> bool:
        """Wait until every thread waiting for `tenant`'s lock now has taken it (or given
        up), or until `until` (a `time.perf_counter` time): whether they all did.
        Returns at once when none waits."""
        with self._changed:
            waiting = self._waiting.get(tenant)
            if not waiting:
                return True
            last = max(waiting)

            def let_in() -> bool:
                now = self._waiting.get(tenant)
                return not now or min(now) > last

            return self._changed.wait_for(let_in, max(0.0, until - time.perf_counter()))


_of: weakref.WeakKeyDictionary[object, Waiters] = weakref.WeakKeyDictionary()
_of_guard = threading.Lock()


def waiters_of(storage: object) -> Waiters:
    """The waiters for the locks over `storage` (one object per store), shared by every
    coordinator of this process over it."""
    with _of_guard:
        found = _of.get(storage)
        if found is None:
            found = _of[storage] = Waiters()
        return found


__all__ = ["Waiters", "waiters_of"]
