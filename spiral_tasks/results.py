"""What the engine's operations return: plain data with the JSON shapes producers see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spiral_tasks.frozen import quick_init
from spiral_tasks.model import Memory, Spiral


@quick_init
@dataclass(frozen=True)
class StoreResult:
    """A stored memory's handle. `memory` is None when the id names a memory that was
    collected (its tombstone stops a late or redelivered store from reviving it).
    `gc_due` is True for the store that completes a GC trigger interval."""

    id: str
    tenant: str
    memory: Memory | None
    created: bool
    gc_due: bool = False

    @property
    def stored(self) -> Memory:
        """The memory, for a result that has one (every store that was not refused by
        a tombstone)."""
        if self.memory is None:
            raise LookupError(f"memory {self.id!r} was collected; only its tombstone is left")
        return self.memory

    def to_json(self) -> dict[str, Any]:
        memory = self.memory
        return {
            "id": self.id,
            "tenant": self.tenant,
            "spiral_id": memory.spiral_id if memory else None,
            "sigil": memory.sigil if memory else None,
            "position": memory.position_json() if memory else None,
            "created": self.created,
        }


@dataclass(frozen=True)
class TenantStats:
    tenant: str
    total_memories: int
    node_records: int
    spirals: tuple[Spiral, ...]

    @property
    def consistent(self) -> bool:
        """The invariant: total == sum of spiral node counts == node records stored."""
        return (self.total_memories == sum(s.node_count for s in self.spirals)
                == self.node_records)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "total_memories": self.total_memories,
            "node_records": self.node_records,
            "spirals": [{"id": s.id, "type": s.type.value, "node_count": s.node_count,
                         "average_depth": s.average_depth,
                         "current_radius": s.current_radius,
                         "total_turns": s.total_turns} for s in self.spirals],
            "consistent": self.consistent,
        }
