"""Pick and open the backend the settings name (by default: LevelDB, no server)."""

from __future__ import annotations

from spiral_tasks.config import Settings, StorageKind
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.level import LevelStorage
from spiral_tasks.storage.memory import MemoryStorage
from spiral_tasks.storage.redis import RedisStorage


def open_storage(settings: Settings) -> Storage:
    storage: Storage
    if settings.storage is StorageKind.MEMORY:
        storage = MemoryStorage()
    elif settings.storage is StorageKind.LEVEL:
        storage = LevelStorage(settings.db_path)
    else:
        assert settings.redis_url is not None
        storage = RedisStorage(settings.redis_url)
    storage.init()
    return storage
