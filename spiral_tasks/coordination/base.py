"""The seam between the engine and whatever serializes it.

The engine does all the writes of one operation inside `critical(tenant)` and hands
them to `Fence.commit`. A local coordinator applies them; the Redis coordinator makes
each commit conditional on still holding the tenant's lock, so a holder whose lock
expired mid-operation (a GC pause, a stopped process) can never write.

Engines cache a tenant's spirals between operations. `Fence.generation` says whether
that cache may be used: it is the tenant's generation when the section was entered,
and every commit replaces the generation with a token never used before. A cache taken
at another generation is stale, and since tokens are never reused, no sequence of
events (another process's commits, a Redis restarted from an older snapshot and
written to again) can make a stale cache look current.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from spiral_tasks.frozen import quick_init
from spiral_tasks.storage.base import Write


@quick_init
@dataclass(frozen=True)
class Snapshot:
    """A request made when entering a section: unless the tenant is still at
    `unless_generation` (None: in any case), also read every key in `keys` and every
    key under `prefix`. `keys` should list the keys under `prefix` the caller knows
    of; a distributed coordinator can then read them in the lock's own round trip."""

    prefix: str
    keys: tuple[str, ...]
    unless_generation: str | None


class Refused(Exception):
    """An optimistic commit that wrote nothing: the tenant moved, is locked, or a key
    the batch assumed absent (present) is not. `reason` says which.

    `locked`, when not None: the refusal took the tenant's lock in its own round trip
    (see `Coordinator.optimistic`), and this is the critical section over it, to be
    entered (once) by the caller as it would enter `Coordinator.critical`: leaving it
    releases the lock."""

    def __init__(self, reason: str,
                 locked: AbstractContextManager[Fence] | None = None) -> None:
        super().__init__(f"optimistic commit refused: {reason}")
        self.reason = reason
        self.locked = locked


class NotOptimistic(Exception):
    """What an optimistic section cannot do without the lock (a commit that is not its
    last, to make room; extending a lock it does not hold): it falls back to the lock."""


#: A snapshot request, or what makes one when the lock is about to be taken: a section
#: that waited for the lock then asks by the cache as the holder left it. Called, it is
#: given the generation the coordinator already found the tenant at (None: not known
#: yet, read with the snapshot), and may answer None for "nothing to read at that
#: generation": a local coordinator knows the generation before it reads anything, and
#: a section whose cache is at it then builds no request at all (every locked store).
SnapshotRequest = Snapshot | Callable[[str | None], Snapshot | None] | None


def resolve(request: SnapshotRequest, generation: str | None = None) -> Snapshot | None:
    """The snapshot `request` asks for, the tenant being at `generation` (None: not
    known yet)."""
    return request(generation) if callable(request) else request


def new_generation() -> str:
    """A generation token no commit has used before."""
    return uuid.uuid4().hex


class Fence(ABC):
    """Proof of holding a tenant's lock; commits only while the proof holds.

    `read` holds the values of the keys the section asked for when it was entered
    (None for a missing key), read under the lock: the Redis coordinator reads them in
    the same round trip that takes the lock.
    """

    read: dict[str, Any]
    #: The snapshot's keys and values, if one was asked for and taken; else None.
    snapshot: Mapping[str, Any] | None = None
    #: The same values as stored (bytes), if the coordinator has them: a spiral whose
    #: bytes did not change since the process last decoded it is not decoded again.
    snapshot_raw: dict[str, bytes | None] | None = None
    #: Whether entering found the lock held by another and waited for it.
    waited: bool = False
    #: For a lock that expires (`Coordinator.lock_lifetime_s`): when (`time.
    #: perf_counter`) the request that took it was sent. Its lifetime runs from no
    #: earlier, and from no later than the reply: a holder that counts its hold from
    #: here keeps a slow reply (a loaded machine, a busy Redis) out of its slack.
    taken_at: float | None = None

    @property
    @abstractmethod
    def generation(self) -> str:
        """The tenant's generation now: as entered, then as left by our last commit."""

    @abstractmethod
    def commit(self, writes: Sequence[Write], final: bool = False) -> int | None:
        """Apply `writes` atomically with a new generation; return the value the last
        increment left. Raises `LockLost` if the lock is no longer ours.

        `final` says no other commit follows in this section, so a distributed
        coordinator may release the lock in the same round trip.
        """

    def extend(self) -> None:  # noqa: B027 - a hook with a do-nothing default
        """Keep the lock for another full lifetime (long work calls this between steps).
        Raises `LockLost` if it expired meanwhile; a local lock does not expire."""


class Coordinator(ABC):
    @property
    def lock_lifetime_s(self) -> float | None:
        """How long a lock taken lives without `Fence.extend` (None: as long as it is
        held, a local lock): work that holds it across several commits without
        extending it (a GC run's batches) stays well inside it."""
        return None

    def let_waiters_in(self, tenant: str, until: float) -> bool:
        """Called by a holder that has just let the tenant's lock go and will take it
        again (a GC run between two holds): wait until the threads of this process that
        wait for the lock now have taken it, or until `until` (a `time.perf_counter`
        time). True if that covers every waiter there can be (locks of one process):
        the caller need not stay away longer; False if waiters elsewhere cannot be
        known (other processes), and the caller should leave them room to take it."""
        return False

    @property
    def commits_optimistically(self) -> bool:
        """Whether `optimistic` may ever give a fence: not for a coordinator that keeps
        the default below, so a caller need not prepare an attempt that cannot be."""
        return type(self).optimistic is not Coordinator.optimistic

    def optimistic(self, tenant: str, generation: str, absent: Sequence[str],
                   present: Sequence[str], known: dict[str, Any], *,
                   read: Sequence[str] = (),
                   snapshot: Snapshot | None = None) -> Fence | None:
        """A fence that commits without the lock, in one step, if the tenant is still
        at `generation`, unlocked, each of `absent` absent and each of `present`
        present; else its commit raises `Refused` and writes nothing. `known` becomes
        its `read`: what the caller decided on (values it holds for that generation).
        None: this coordinator commits only under the lock (a local lock costs no
        round trip worth saving).

        With `snapshot`, a commit refused because the tenant moved while the lock was
        free may take the lock in that same step, as `critical(tenant, read=read,
        snapshot=snapshot)` would (the snapshot is then always taken, `unless_generation`
        aside): its `Refused.locked` is that critical section."""
        return None

    @abstractmethod
    def claim(self, name: str, window_s: float) -> bool:
        """True for the first caller of `name` in each `window_s` seconds, across
        every process this coordinator serves (e.g. one startup rebuild per window)."""

    @abstractmethod
    def critical(self, tenant: str, timeout_s: float | None = None,
                 read: Sequence[str] = (),
                 snapshot: SnapshotRequest = None) -> AbstractContextManager[Fence]:
        """Enter the tenant's critical section, waiting at most `timeout_s` (default:
        the configured wait), or raise `LockTimeout`; then `fence.read` holds the values
        of the keys in `read`, and `fence.snapshot` what `snapshot` asked for, if the
        tenant is not at the generation it names. A callable `snapshot` is asked for
        the request when the lock is about to be taken (again at each try after a
        wait)."""
