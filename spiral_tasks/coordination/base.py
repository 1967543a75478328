"""The seam between the engine and whatever serializes it.

The engine does all the writes of one operation inside `critical(tenant)` and hands
them to `Fence.commit`. A local coordinator just applies them; the Redis coordinator
makes each commit conditional on still holding the tenant's lock, so a holder whose
lock expired mid-operation (a GC pause, a stopped process) can never write.

Engines cache a tenant's spirals between operations. `Fence.generation` tells whether
that cache may be used: None means this process is the only writer (always valid);
a number is the tenant's write generation, read when the lock was taken and bumped
by every commit, so a cache made at another generation is stale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager

from spiral_tasks.storage.base import Write


class Fence(ABC):
    """Proof of holding a tenant's lock; commits only while the proof holds."""

    @property
    def generation(self) -> int | None:
        return None

    @abstractmethod
    def commit(self, writes: Sequence[Write], final: bool = False) -> int | None:
        """Apply `writes` atomically; return the value the last increment left.

        `final` says no other commit follows in this section, so a distributed
        coordinator may release the lock in the same round trip.
        """

    def extend(self) -> None:  # noqa: B027 - a hook with a do-nothing default
        """Keep the lock for another full timeout (long work calls this between
        steps); nothing to do for a local lock, which does not expire."""


class Coordinator(ABC):
    @abstractmethod
    def claim(self, name: str, window_s: float) -> bool:
        """True for the first caller of `name` in each `window_s` seconds, across
        every process this coordinator serves (e.g. one startup rebuild per window)."""

    @abstractmethod
    def critical(self, tenant: str,
                 timeout_s: float | None = None) -> AbstractContextManager[Fence]:
        """Enter the tenant's critical section, waiting at most `timeout_s` (default:
        the configured lock timeout), or raise `LockTimeout`."""
