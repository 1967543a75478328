"""The invariant every concurrency and fault test ends on."""

from __future__ import annotations

from spiral_tasks.engine import SpiralMemory
from spiral_tasks.keys import TenantKeys


def assert_consistent(engine: SpiralMemory, tenant: str = "default") -> int:
    """total memories == sum of spiral node counts == node records in storage, and each
    spiral counter agrees. Returns the total."""
    stats = engine.stats(tenant)
    keys = TenantKeys(tenant)
    records = len(engine.storage.keys(keys.memories))
    node_sum = sum(s.node_count for s in stats.spirals)
    assert stats.total_memories == node_sum == records, (
        f"total {stats.total_memories}, spiral sum {node_sum}, records {records}")
    for spiral in stats.spirals:
        assert engine.storage.get(keys.spiral_count(spiral.id)) in (spiral.node_count, None)
    assert stats.consistent
    return stats.total_memories
