"""The garbage-collection policy: which memory goes first, and when one may go.

Every collectable memory has a score, its *retention deadline*:

    retain_until = last_accessed + retention_s * depth_weight
                                 * (0.5 + strength) * (1 + log2(1 + access_count))

A weak, old, rarely accessed, shallow memory has the earliest deadline, so the
priority queue (ordered by this score) yields the least valuable memory first.
Retrieval refreshes `last_accessed`, count and strength, and so pushes the deadline
back. Core and transcendent memories have no score: they are never queued.

A memory is eligible once its deadline has passed, or, while the tenant holds more
than `max_memory_nodes`, if it is among the lowest-scored `over` memories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spiral_tasks.model import DEPTH_WEIGHTS, Depth, Memory

INITIAL_STRENGTH = 0.5


def retention_deadline(depth: Depth, strength: float, access_count: int,
                       last_accessed: float, retention_s: float) -> float:
    value = DEPTH_WEIGHTS[depth] * (0.5 + strength) * (1 + math.log2(1 + access_count))
    return last_accessed + retention_s * value


def retain_until(memory: Memory, retention_s: float) -> float:
    return retention_deadline(memory.depth, memory.strength, memory.access_count,
                              memory.last_accessed, retention_s)


def select(candidates: Sequence[tuple[str, float]], now: float, over: int) -> list[str]:
    """The eligible prefix of `candidates` (lowest score first).

    Stops at the first memory that is neither expired nor needed to get back under
    the node limit: everything after it scores higher, so it is not eligible either.
    """
    chosen: list[str] = []
    for member, deadline in candidates:
        if deadline > now and len(chosen) >= over:
            break
        chosen.append(member)
    return chosen


@dataclass
class GcReport:
    """What one GC run did. `complete` is False when the budget ran out first; the next
    run resumes where this one stopped. `time_budget_ms` is the budget it was given
    (the configured one unless the caller named one)."""

    collected_ids: list[str] = field(default_factory=list)
    remaining: int = 0
    duration_ms: float = 0.0
    complete: bool = True
    time_budget_ms: float = 0.0

    @property
    def collected(self) -> int:
        return len(self.collected_ids)

    def to_json(self) -> dict[str, Any]:
        return {
            "collected": self.collected,
            "remaining": self.remaining,
            "duration_ms": round(self.duration_ms, 3),
            "complete": self.complete,
            "time_budget_ms": self.time_budget_ms,
            "collected_ids": list(self.collected_ids),
        }
