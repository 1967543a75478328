"""Build an engine from settings: storage, coordination and policies wired together."""

from __future__ import annotations

import logging

from spiral_tasks import heap
from spiral_tasks.config import LockPolicy, Settings, current
from spiral_tasks.coordination.base import Coordinator
from spiral_tasks.coordination.local import LocalCoordinator
from spiral_tasks.coordination.unlocked import UnlockedCoordinator
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.observe import NO_OBSERVER, Observer
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.factory import storage_from

log = logging.getLogger(__name__)


def open_coordinator(storage: Storage, locks: LockPolicy | None = None) -> Coordinator:
    """Redis storage is shared by many processes: coordinate with Redis locks. The
    other backends serve one process: a local lock suffices. (SPIRAL_UNSAFE_UNLOCKED=1
    turns locking off, so benchmarks can measure what it costs.)"""
    locks = locks or LockPolicy()
    if locks.unsafe_unlocked:
        log.warning("SPIRAL_UNSAFE_UNLOCKED=1: no locks; tenants WILL be corrupted by "
                    "concurrent writers. For benchmarks only.")
        return UnlockedCoordinator(storage)
    if storage.name == "redis":
        from spiral_tasks.coordination.redis import RedisCoordinator  # noqa: PLC0415
        from spiral_tasks.storage.redis import RedisStorage  # noqa: PLC0415

        assert isinstance(storage, RedisStorage)
        return RedisCoordinator(storage, wait_s=locks.wait_s, ttl_s=locks.ttl_s,
                                optimistic=locks.optimistic)
    return LocalCoordinator(storage, locks.wait_s)


def open_engine(settings: Settings | None = None,
                observer: Observer = NO_OBSERVER) -> SpiralMemory:
    """An engine over the backend the settings select, reporting to `observer`. The
    first in a process settles its heap (`spiral_tasks/heap.py`): a full garbage
    collection then no longer pauses every store for 15-25 ms."""
    settings = settings or current()
    # Before the engine exists: frozen, an engine dropped later (its LevelDB handle,
    # its connections, its cache) would never be freed.
    heap.settle()
    storage = storage_from(settings)
    return SpiralMemory(storage, open_coordinator(storage, settings.locks), settings.limits,
                        settings.gc, sigil_secret=settings.sigils.secret,
                        old_sigil_secrets=settings.sigils.old_secrets,
                        sigil_refresh_s=settings.sigils.refresh_s, observer=observer,
                        audit=settings.audit)
