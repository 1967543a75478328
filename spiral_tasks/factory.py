"""Build an engine from settings: storage, coordination and limits wired together."""

from __future__ import annotations

from spiral_tasks.config import Settings
from spiral_tasks.coordination.local import LocalCoordinator
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.storage.factory import open_storage


def open_engine(settings: Settings | None = None) -> SpiralMemory:
    settings = settings or Settings.from_env()
    storage = open_storage(settings)
    coordinator = LocalCoordinator(storage, settings.limits.lock_timeout_s)
    return SpiralMemory(storage, coordinator, settings.limits,
                        sigil_secret=settings.sigil_secret)
