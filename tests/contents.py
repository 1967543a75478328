"""A store with a bit of everything in it, and everything a store holds, for tests
that copy stores around (backup, restore) and must compare them key by key."""

from __future__ import annotations

from typing import Any

from spiral_tasks.engine import SpiralMemory
from spiral_tasks.keys import TENANTS_PREFIX, TenantKeys
from spiral_tasks.storage.base import Storage

DEPTHS = ["surface", "shallow", "deep", "core", "transcendent"]


def populate(engine: SpiralMemory, tenants: tuple[str, ...] = ("acme", "zeta"),
             count: int = 30) -> None:
    """Stores of every depth with links, retrievals (scores move), collects
    (tombstones and their queue), in each tenant."""
    for tenant in tenants:
        ids = [engine.store(f"{tenant} memory {i} é ✓", depth=DEPTHS[i % 5], type="test",
                            tenant=tenant, memory_id=f"m{i}",
                            associations=[f"m{i - 1}"] if i else []).stored.id
               for i in range(count)]
        for memory_id in ids[::4]:
            engine.retrieve(memory_id, tenant=tenant)
        for memory_id in ids[1::7]:
            engine.collect(memory_id, tenant=tenant)


def contents(storage: Storage) -> dict[str, Any]:
    """Every tenant's keys and values, index entries and markers: what a backup must
    carry (not locks, generations, claims or meta keys)."""
    tenants = sorted(k[len(TENANTS_PREFIX):] for k in storage.keys(TENANTS_PREFIX))
    found: dict[str, Any] = {}
    for tenant in tenants:
        keys = TenantKeys(tenant)
        found[f"{TENANTS_PREFIX}{tenant}"] = storage.get(f"{TENANTS_PREFIX}{tenant}")
        found.update((k, v) for k, v in storage.scan(keys.namespace)
                     if k not in keys.coordination)
        for index in keys.indexes:
            found[index] = storage.index_range(index)
    return found
