"""Which spiral a new memory goes to: a pure function of the tenant's spirals."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from spiral_tasks.model import Depth, Spiral, SpiralType


def fit(spiral: Spiral, depth: Depth) -> float:
    """How well a memory of `depth` suits `spiral`: its type first, then a utilisation
    near 0.7, then an average depth close to the memory's."""
    preferred = SpiralType.preferred_for(depth)
    return (2.0 * (spiral.type is preferred)
            + 1.0 - abs(spiral.utilisation - 0.7)
            + 1.0 - abs(spiral.average_depth - depth.weight))


def choose_spiral(tenant: str, spirals: Mapping[str, Spiral], depth: Depth,
                  max_spirals: int, now: float) -> Spiral | None:
    """The best-fitting spiral with room; a new one of the depth's preferred type when
    no open spiral has that type and the tenant may have another spiral; None when
    every spiral is full and no other may be made."""
    preferred = SpiralType.preferred_for(depth)
    open_spirals = [s for s in spirals.values() if s.has_room]
    if len(spirals) < max_spirals and not any(s.type is preferred for s in open_spirals):
        return Spiral.new(f"spiral_{uuid.uuid4().hex[:16]}", tenant, preferred, now)
    if not open_spirals:
        return None
    return max(open_spirals, key=lambda s: (fit(s, depth), s.id))
