"""Coordination inside one process (in-memory and LevelDB storage).

One lock per tenant, acquired with a timeout (2 s by default): a section stuck behind
another fails with `LockTimeout` instead of hanging the process, which the original's
"2 s mutex timeout" promised and never did.

These backends serve one process, so what coordinates writers lives in its memory,
beside the storage object: the tenants' locks, their generations (a counter that never
repeats within the process; a cache lives no longer than its process) and the claims.
Every coordinator over the same storage object shares them, so two engines over one
store serialize like two threads of one engine.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from spiral_tasks.coordination.base import Coordinator, Fence, SnapshotRequest, resolve
from spiral_tasks.coordination.waiters import waiters_of
from spiral_tasks.errors import LockTimeout
from spiral_tasks.storage.base import Storage, Write


@dataclass
class ProcessState:
    """What this process's coordinators over one storage object share."""

    locks: dict[str, threading.Lock] = field(default_factory=dict)
    generations: dict[str, str] = field(default_factory=dict)
    claims: dict[str, float] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def lock_for(self, tenant: str) -> threading.Lock:
        # A tenant's lock, once made, is never replaced: found without the guard.
        lock = self.locks.get(tenant)
        if lock is None:
            with self.guard:
                lock = self.locks.setdefault(tenant, threading.Lock())
        return lock


_states: weakref.WeakKeyDictionary[Storage, ProcessState] = weakref.WeakKeyDictionary()
_states_guard = threading.Lock()
_counter = itertools.count(1)


def process_state(storage: Storage) -> ProcessState:
    with _states_guard:
        return _states.setdefault(storage, ProcessState())


class DirectFence(Fence):
    """Applies commits straight to storage: the fence of coordinators whose writers
    cannot lose their lock (one process) or have none (benchmarks). Each commit gives
    the tenant a new generation, kept in this process's memory."""

    def __init__(self, storage: Storage, tenant: str, read: Sequence[str],
                 request: SnapshotRequest, shared: ProcessState | None = None) -> None:
        """`shared`: the storage's `process_state`, if the caller holds it."""
        self._storage = storage
        self._tenant = tenant
        self._generations = (shared or process_state(storage)).generations
        self._generation = self._generations.get(tenant, "")
        # Tolerant reads: a bad value stays `Unreadable` until a section reads it.
        self.read = dict(zip(read, storage.read_many(read), strict=True)) if read else {}
        snapshot = resolve(request, self._generation)  # the lock is held: asked once, now
        if snapshot is not None and snapshot.unless_generation != self._generation:
            taken = dict(storage.read_scan(snapshot.prefix))
            taken.update(zip(snapshot.keys, storage.read_many(snapshot.keys), strict=True))
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
        self._shared = process_state(storage)
        #: The threads waiting for each tenant's lock (a GC run lets them in between
        #: its holds).
        self.waiters = waiters_of(storage)

    def claim(self, name: str, window_s: float) -> bool:
        now = time.monotonic()
        shared = self._shared
        with shared.guard:
            if shared.claims.get(name, -window_s - 1) + window_s > now:
                return False
            shared.claims[name] = now
            return True

    def critical(self, tenant: str, timeout_s: float | None = None,
                 read: Sequence[str] = (),
                 snapshot: SnapshotRequest = None) -> AbstractContextManager[Fence]:
        wait = self._timeout_s if timeout_s is None else max(0.0, timeout_s)
        return _Held(self, tenant, wait, read, snapshot)

    def let_waiters_in(self, tenant: str, until: float) -> bool:
        # Every thread that can wait for these locks is in this process, and counted.
        return self.waiters.let_in(tenant, until)


class _Held(AbstractContextManager[Fence]):
    """A local critical section: the tenant's lock, from entering until leaving. A class,
    not a generator: every section of every operation enters one."""

    def __init__(self, coordinator: LocalCoordinator, tenant: str, wait: float,
                 read: Sequence[str], snapshot: SnapshotRequest) -> None:
        self._coordinator = coordinator
        self._tenant = tenant
        self._wait = wait
        self._read = read
        self._snapshot = snapshot
        shared = coordinator._shared
        # A tenant's lock, once made, is found by one lookup (`lock_for` makes it).
        self._lock = shared.locks.get(tenant) or shared.lock_for(tenant)

    def __enter__(self) -> Fence:
        # Counted as a waiter only once the lock was found taken: a free lock costs
        # one try, as before.
        if not self._lock.acquire(blocking=False):
            taken = False
            if self._wait > 0:
                with self._coordinator.waiters.waiting(self._tenant):
                    taken = self._lock.acquire(timeout=self._wait)
            if not taken:
                raise LockTimeout(
                    f"tenant {self._tenant!r} stayed locked for {self._wait:.3f} s; nothing "
                    "was written, try again")
        try:
            coordinator = self._coordinator
            return DirectFence(coordinator._storage, self._tenant, self._read,
                               self._snapshot, coordinator._shared)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
