"""Build an engine from settings: storage, coordination and limits wired together."""

from __future__ import annotations

import logging
import os

from spiral_tasks.config import Limits, Settings
from spiral_tasks.coordination.base import Coordinator
from spiral_tasks.coordination.local import LocalCoordinator
from spiral_tasks.coordination.redis import RedisCoordinator
from spiral_tasks.coordination.unlocked import UnlockedCoordinator
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.storage.redis import RedisStorage

log = logging.getLogger(__name__)


def open_coordinator(storage: Storage, limits: Limits) -> Coordinator:
    """Redis storage is shared by many processes: coordinate with Redis locks. The
    other backends serve one process: a local lock suffices. (SPIRAL_UNSAFE_UNLOCKED=1
    turns locking off, so benchmarks can measure what it costs.)"""
    if os.environ.get("SPIRAL_UNSAFE_UNLOCKED") == "1":
        log.warning("SPIRAL_UNSAFE_UNLOCKED=1: no locks; tenants WILL be corrupted by "
                    "concurrent writers. For benchmarks only.")
        return UnlockedCoordinator(storage)
    if isinstance(storage, RedisStorage):
        return RedisCoordinator(storage, wait_s=limits.lock_timeout_s)
    return LocalCoordinator(storage, limits.lock_timeout_s)


def open_engine(settings: Settings | None = None) -> SpiralMemory:
    settings = settings or Settings.from_env()
    storage = open_storage(settings)
    return SpiralMemory(storage, open_coordinator(storage, settings.limits), settings.limits,
                        sigil_secret=settings.sigil_secret)
