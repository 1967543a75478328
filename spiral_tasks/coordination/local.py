"""Coordination inside one process (in-memory and LevelDB storage).

One lock per tenant, acquired with a timeout (2 s by default): a section stuck behind
another fails with `LockTimeout` instead of hanging the process, which the original's
"2 s mutex timeout" promised and never did.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from spiral_tasks.coordination.base import Coordinator, Fence, Snapshot
from spiral_tasks.errors import LockTimeout
from spiral_tasks.storage.base import Storage, Write

#: Each tenant's generation, per storage object. These backends serve one process, so
#: the generations of its commits live in its memory, beside the storage object every
#: engine over it shares; a counter never repeats within the process, and a cache
#: lives no longer than its process.
_generations: weakref.WeakKeyDictionary[Storage, dict[str, str]] = weakref.WeakKeyDictionary()
_counter = itertools.count(1)
_guard = threading.Lock()


def _generations_of(storage: Storage) -> dict[str, str]:
    with _guard:
        return _generations.setdefault(storage, {})


class DirectFence(Fence):
    """Applies commits straight to storage: the fence of coordinators whose writers
    cannot lose their lock (one process) or have none (benchmarks). Each commit gives
    the tenant a new generation, kept in this process's memory."""

    def __init__(self, storage: Storage, tenant: str, read: Sequence[str],
                 snapshot: Snapshot | None) -> None:
        self._storage = storage
        self._tenant = tenant
        self._generations = _generations_of(storage)
        self._generation = self._generations.get(tenant, "")
        self.read = dict(zip(read, storage.get_many(read), strict=True)) if read else {}
        if snapshot is not None and snapshot.unless_generation != self._generation:
            taken = dict(storage.scan(snapshot.prefix))
            taken.update(zip(snapshot.keys, storage.get_many(snapshot.keys), strict=True))
            self.snapshot = taken

    @property
    def generation(self) -> str:
        return self._generation

    def commit(self, writes: Sequence[Write], final: bool = False) -> int | None:
        if not writes:
            return None  # nothing changes, so the generation need not either
        last = self._storage.apply(writes)
        self._generation = self._generations[self._tenant] = f"local-{next(_counter)}"
        return last


class LocalCoordinator(Coordinator):
    def __init__(self, storage: Storage, timeout_s: float = 2.0) -> None:
        self._storage = storage
        self._timeout_s = timeout_s
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._claims: dict[str, float] = {}

    def claim(self, name: str, window_s: float) -> bool:
        now = time.monotonic()
        with self._locks_guard:
            if self._claims.get(name, -window_s - 1) + window_s > now:
                return False
            self._claims[name] = now
            return True

    def _lock_for(self, tenant: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(tenant, threading.Lock())

    @contextmanager
    def critical(self, tenant: str, timeout_s: float | None = None,
                 read: Sequence[str] = (),
                 snapshot: Snapshot | None = None) -> Iterator[Fence]:
        wait = self._timeout_s if timeout_s is None else max(0.0, timeout_s)
        lock = self._lock_for(tenant)
        if not lock.acquire(timeout=wait):
            raise LockTimeout(
                f"tenant {tenant!r} stayed locked for {wait:.3f} s; nothing was written, "
                "try again")
        try:
            yield DirectFence(self._storage, tenant, read, snapshot)
        finally:
            lock.release()
