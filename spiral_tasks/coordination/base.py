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
from dataclasses import dataclass
from typing import Any

from spiral_tasks.storage.base import Write


@dataclass(frozen=True)
class Snapshot:
    """A request, made when entering a section: unless the tenant is still at
    `unless_generation`, also read every key under `prefix` and every key in `keys`
    (so a process whose cache went stale refreshes it without another round trip)."""

    prefix: str
    keys: tuple[str, ...]
    unless_generation: int | None


#: An `unless_generation` no tenant is ever at: always take the snapshot.
NO_GENERATION = -1


class Fence(ABC):
    """Proof of holding a tenant's lock; commits only while the proof holds.

    `read` holds the values of the keys the section asked for when it was entered
    (None for a missing key), read under the lock: the Redis coordinator reads them in
    the same round trip that takes the lock.
    """

    read: dict[str, Any]
    #: The snapshot's keys and values, if one was asked for and taken; else None.
    snapshot: dict[str, Any] | None = None

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
    def critical(self, tenant: str, timeout_s: float | None = None,
                 read: Sequence[str] = (),
                 snapshot: Snapshot | None = None) -> AbstractContextManager[Fence]:
        """Enter the tenant's critical section, waiting at most `timeout_s` (default:
        the configured lock timeout), or raise `LockTimeout`; then `fence.read` holds
        the values of the keys in `read`, and `fence.snapshot` what `snapshot` asked
        for, if the tenant moved since."""

