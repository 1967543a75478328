"""Digests of everything stored, so a test can say "this call changed nothing"."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import orjson
import redis

from spiral_tasks.keys import TENANTS_PREFIX, TenantKeys, split_tenant_key
from spiral_tasks.storage.base import Storage, Unreadable


def storage_digest(storage: Storage) -> str:
    """Every key and value (as stored: a corrupt one as its bytes) and every tenant's
    ordered indexes, through the storage contract, on any backend."""
    digest = hashlib.sha256()
    keys = sorted(storage.keys(""))
    for key, value in zip(keys, storage.read_many(keys), strict=True):
        digest.update(key.encode() + b"\0")
        digest.update(value.raw if isinstance(value, Unreadable) else orjson.dumps(value))
    tenants = {k[len(TENANTS_PREFIX):] for k in keys if k.startswith(TENANTS_PREFIX)}
    tenants |= {split[0] for k in keys if (split := split_tenant_key(k))}
    for tenant in sorted(tenants):
        for index in TenantKeys(tenant).indexes:
            digest.update(f"{index}\0{storage.index_range(index)!r}\0".encode())
    return digest.hexdigest()


def redis_digest(client: redis.Redis, ignore: Callable[[str], bool] = lambda _: False
                 ) -> str:
    """Every key of the client's database, whatever its type, except those `ignore`
    says (bytes as stored: nothing is decoded). Two round trips after the SCAN."""
    names = sorted(k for k in client.scan_iter(count=1000)
                   if not ignore(k.decode(errors="replace")))
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.type(name)
        kinds = pipe.execute()
    reads = {b"string": lambda p, n: p.get(n),
             b"zset": lambda p, n: p.zrange(n, 0, -1, withscores=True),
             b"hash": lambda p, n: p.hgetall(n), b"list": lambda p, n: p.lrange(n, 0, -1),
             b"set": lambda p, n: p.smembers(n)}
    with client.pipeline(transaction=False) as pipe:
        for name, kind in zip(names, kinds, strict=True):
            reads.get(kind, lambda p, n: p.exists(n))(pipe, name)
        values = pipe.execute()
    digest = hashlib.sha256()
    for name, kind, value in zip(names, kinds, values, strict=True):
        shown = sorted(value.items()) if isinstance(value, dict) else \
            sorted(value) if isinstance(value, set) else value
        digest.update(name + b"\0" + kind + b"\0" + repr(shown).encode() + b"\0")
    return digest.hexdigest()


class Unchanged:
    """Checks that calls change nothing, digesting once per call: the digest taken
    after one call is the one the next compares with, until a call may have written."""

    def __init__(self, digest: Callable[[], str]) -> None:
        self._digest = digest
        self._last: str | None = None

    def before(self) -> None:
        """A call is about to be made."""
        if self._last is None:
            self._last = self._digest()

    def changed(self) -> bool:
        """Whether the call made since `before` changed anything."""
        now = self._digest()
        changed, self._last = now != self._last, now
        return changed

    def forget(self) -> None:
        """The call may have written (it was answered): digest again before the next."""
        self._last = None
