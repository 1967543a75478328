"""No coordination at all: for measuring what the lock costs, in benchmarks only.

Selected by SPIRAL_UNSAFE_UNLOCKED=1. Without a lock, concurrent writers to one
tenant corrupt its statistics: never use it for anything that matters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from spiral_tasks.coordination.base import Coordinator, Fence, Snapshot, read_locally
from spiral_tasks.storage.base import Storage, Write


class _UnlockedFence(Fence):
    def __init__(self, storage: Storage, read: Sequence[str],
                 snapshot: Snapshot | None) -> None:
        self._storage = storage
        read_locally(storage, self, read, snapshot)

    def commit(self, writes: Sequence[Write], final: bool = False) -> int | None:
        return self._storage.apply(writes)


class UnlockedCoordinator(Coordinator):
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def claim(self, name: str, window_s: float) -> bool:
        return True

    @contextmanager
    def critical(self, tenant: str, timeout_s: float | None = None,
                 read: Sequence[str] = (),
                 snapshot: Snapshot | None = None) -> Iterator[Fence]:
        yield _UnlockedFence(self._storage, read, snapshot)
