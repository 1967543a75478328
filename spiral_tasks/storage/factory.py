"""The one place a backend is chosen and opened: for the package, tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from spiral_tasks.config import EncryptionSettings, Settings, StorageKind
from spiral_tasks.security.atrest import seal_storage
from spiral_tasks.storage.base import Storage


def open_storage(kind: StorageKind | str, *, db_path: str | Path = "./spiraldb",
                 redis_url: str | None = None,
                 encryption: EncryptionSettings | None = None) -> Storage:
    """Open the backend `kind` (memory, level or redis) with the codec `encryption`
    calls for (none: plain JSON). Client libraries are imported here, when a backend
    is chosen, so importing the engine imports neither. A store that needs a key this
    process lacks is closed again and refused (`EncryptionKeyMissing`)."""
    kind = StorageKind(kind)
    storage: Storage
    if kind is StorageKind.MEMORY:
        from spiral_tasks.storage.memory import MemoryStorage  # noqa: PLC0415

        storage = MemoryStorage()
    elif kind is StorageKind.LEVEL:
        from spiral_tasks.storage.level import LevelStorage  # noqa: PLC0415

        storage = LevelStorage(db_path)
    else:
        from spiral_tasks.storage.redis import RedisStorage  # noqa: PLC0415

        if redis_url is None:
            raise ValueError("redis storage needs a URL")
        storage = RedisStorage(redis_url)
    storage.init()
    try:
        seal_storage(storage, encryption or EncryptionSettings())
    except BaseException:
        storage.close()
        raise
    return storage


def storage_from(settings: Settings) -> Storage:
    """The backend the settings select (by default LevelDB in ./spiraldb: no server)."""
    return open_storage(settings.storage, db_path=settings.db_path,
                        redis_url=settings.redis_url, encryption=settings.encryption)
