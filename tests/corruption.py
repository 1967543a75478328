"""Damage stored records the way a bad disk, a bug or a hand edit would: bad bytes
written straight into the real backend, behind the storage adapter's back."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from spiral_tasks.keys import directory_of
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.level import LevelStorage
from spiral_tasks.storage.memory import MemoryStorage
from spiral_tasks.storage.redis import RedisStorage


def raw(storage: Storage, key: str) -> bytes:
    """The bytes stored at `key`."""
    found = storage._get(key)  # the bytes themselves, undecoded
    assert found is not None, key
    return found


def write_raw(storage: Storage, key: str, data: bytes) -> None:
    """Store `data` at `key` as it is, in the backend itself."""
    if isinstance(storage, RedisStorage):
        storage.client.set(key, data)
        # As a record the adapter wrote and then lost bytes of: listed in its directory.
        storage.client.zadd(directory_of(key), {key: 0})
    elif isinstance(storage, LevelStorage):
        storage.db.put(key.encode(), data)
    elif isinstance(storage, MemoryStorage):
        storage._data[key] = data  # the backend's own dict
    else:
        raise TypeError(f"no raw access to {type(storage).__name__}")


#: Ways to damage a record's bytes, by name: each takes the record's bytes.
DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "bad JSON": lambda _: b'{"id": "x", "content": ',
    "truncated": lambda data: data[:max(1, len(data) // 2)],
    "not UTF-8": lambda _: b"\xff\xfe\x00\x9c garbage",
    # What a sealed value that does not open looks like to a codec without its key.
    "bad ciphertext": lambda _: b"\x01sealed\x00" + bytes(range(200, 256)),
    "wrong type": lambda _: orjson.dumps(["a", "list", 1]),
    "empty": lambda _: b"",
}
