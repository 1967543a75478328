"""The seam between the engine and whatever serializes it.

The engine does all its writes for one operation inside `critical(tenant)` and hands
them to `Fence.commit`. A local coordinator just applies them; a distributed one
(Redis, next) makes the commit conditional on still holding the lock, so a holder
whose lock expired mid-operation can never write.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager

from spiral_tasks.storage.base import Write


class Fence(ABC):
    """Proof of holding a tenant's lock; commits only while the proof holds."""

    @abstractmethod
    def commit(self, writes: Sequence[Write]) -> None: ...

    @property
    def cache_valid(self) -> bool:
        """Whether state cached by this process may be used inside the section.

        True for a single process, which is the only writer. A distributed
        coordinator answers from what it learns when it takes the lock.
        """
        return True


class Coordinator(ABC):
    @abstractmethod
    def critical(self, tenant: str,
                 timeout_s: float | None = None) -> AbstractContextManager[Fence]:
        """Enter the tenant's critical section, waiting at most `timeout_s` (default:
        the configured lock timeout), or raise `LockTimeout`."""
