"""Coordination inside one process (in-memory and LevelDB storage).

One lock per tenant, acquired with a timeout (2 s by default): a section stuck behind
another fails with `LockTimeout` instead of hanging the process, which the original's
"2 s mutex timeout" promised and never did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from spiral_tasks.coordination.base import Coordinator, Fence, Snapshot, new_generation
from spiral_tasks.errors import LockTimeout
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.base import Put, Storage, Write


class DirectFence(Fence):
    """Applies commits straight to storage, with the tenant's new generation in the same
    batch: the fence of coordinators whose writers cannot lose their lock (one
    process) or have none (benchmarks)."""

    def __init__(self, storage: Storage, tenant: str, read: Sequence[str],
                 snapshot: Snapshot | None) -> None:
        self._storage = storage
        self._generation_key = TenantKeys(tenant).generation
        found = storage.get_many([self._generation_key, *read])
        self._generation = found[0] if isinstance(found[0], str) else ""
        self.read = dict(zip(read, found[1:], strict=True))
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
        generation = new_generation()
        # The generation goes first: the batch's last increment is what it returns.
        last = self._storage.apply([Put(self._generation_key, generation), *writes])
        self._generation = generation
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
