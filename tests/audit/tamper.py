"""Raw access to a tenant's audit log, as an attacker with the store's credentials has
it: the Redis stream or the LevelDB key range, read and rewritten byte by byte."""

from __future__ import annotations

import struct

import orjson

from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.level import LevelStorage
from spiral_tasks.storage.redis import RedisStorage


def _level_head(tenant: str) -> bytes:
    return b"\xffl" + TenantKeys(tenant).audit_log.encode() + b"\x00"


def raw_log(storage: Storage, tenant: str) -> list[bytes]:
    """The stored entries' bytes, in log order."""
    log = TenantKeys(tenant).audit_log
    if isinstance(storage, RedisStorage):
        return [fields[b"e"] for _, fields in storage.client.xrange(log)]  # type: ignore[union-attr]
    assert isinstance(storage, LevelStorage)
    with storage.db.iterator(prefix=_level_head(tenant)) as it:
        return [raw for _, raw in it]


def rewrite(storage: Storage, tenant: str, raws: list[bytes]) -> list[str]:
    """Replace the log with `raws`, in order; return the positions they got."""
    log = TenantKeys(tenant).audit_log
    if isinstance(storage, RedisStorage):
        client = storage.client
        client.delete(log)
        for n, raw in enumerate(raws, 1):
            client.xadd(log, {"e": raw}, id=f"{n}-0")
        return [f"{n}-0" for n in range(1, len(raws) + 1)]
    assert isinstance(storage, LevelStorage)
    head = _level_head(tenant)
    with storage.db.iterator(prefix=head, include_value=False) as it:
        for key in list(it):
            storage.db.delete(key)
    for n, raw in enumerate(raws, 1):
        storage.db.put(head + struct.pack(">Q", n), raw)
    return [f"{n:020d}" for n in range(1, len(raws) + 1)]


def edited(raw: bytes, **changes: object) -> bytes:
    """An entry's bytes with fields changed (its hash and signature left as they were)."""
    return orjson.dumps({**orjson.loads(raw), **changes})
