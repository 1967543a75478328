"""Digests of everything stored, so a test can say "this call changed nothing"."""

from __future__ import annotations

import hashlib

import redis

from spiral_tasks.keys import TENANTS_PREFIX, TenantKeys, split_tenant_key
from spiral_tasks.storage.base import Storage


def storage_digest(storage: Storage) -> str:
    """Every key and value (as stored: a corrupt one as its bytes) and every tenant's
    ordered indexes, through the storage contract, on any backend."""
    digest = hashlib.sha256()
    keys = sorted(storage.keys(""))
    for key, value in zip(keys, storage.read_many(keys), strict=True):
        digest.update(f"{key}\0{value!r}\0".encode(errors="surrogatepass"))
    tenants = {k[len(TENANTS_PREFIX):] for k in keys if k.startswith(TENANTS_PREFIX)}
    tenants |= {split[0] for k in keys if (split := split_tenant_key(k))}
    for tenant in sorted(tenants):
        for index in TenantKeys(tenant).indexes:
            digest.update(f"{index}\0{storage.index_range(index)!r}\0".encode())
    return digest.hexdigest()


def redis_digest(client: redis.Redis, skip: tuple[str, ...] = ()) -> str:
    """Every key of the client's database, whatever its type, except those starting
    with one of `skip` (bytes as stored: nothing is decoded)."""
    digest = hashlib.sha256()
    names = sorted(k for k in client.scan_iter(count=1000)
                   if not k.decode(errors="replace").startswith(skip))
    for name in names:
        kind = client.type(name)
        if kind == b"string":
            value: object = client.get(name)
        elif kind == b"zset":
            value = client.zrange(name, 0, -1, withscores=True)
        elif kind == b"hash":
            value = sorted(client.hgetall(name).items())  # type: ignore[union-attr]
        elif kind == b"list":
            value = client.lrange(name, 0, -1)
        elif kind == b"set":
            value = sorted(client.smembers(name))  # type: ignore[arg-type]
        else:
            value = kind
        digest.update(name + b"\0" + repr(value).encode() + b"\0")
    return digest.hexdigest()
