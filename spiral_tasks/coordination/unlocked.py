"""No coordination at all: for measuring what the lock costs, in benchmarks only.

Selected by SPIRAL_UNSAFE_UNLOCKED=1. Without a lock, concurrent writers to one
tenant corrupt its statistics: never use it for anything that matters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from spiral_tasks.coordination.base import Coordinator, Fence, SnapshotRequest
from spiral_tasks.coordination.local import DirectFence
from spiral_tasks.storage.base import Storage


class UnlockedCoordinator(Coordinator):
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def claim(self, name: str, window_s: float) -> bool:
        return True

    @contextmanager
    def critical(self, tenant: str, timeout_s: float | None = None,
                 read: Sequence[str] = (),
                 snapshot: SnapshotRequest = None) -> Iterator[Fence]:
        yield DirectFence(self._storage, tenant, read, snapshot)
