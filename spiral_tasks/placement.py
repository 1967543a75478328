"""Which spiral a new memory goes to: a pure function of the tenant's spirals.

`choose_spiral` says what the answer is; `OpenSpirals` gives the same answer without
looking at every spiral. A tenant's spirals fill one after another, so nearly all of
them are full: the index keeps only the open ones, by type, and is kept as spirals
change (`cache.TenantState.put`), so a store looks at the few open spirals of its
depth's type instead of every spiral the tenant ever had.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from spiral_tasks.model import DEPTH_WEIGHTS, PREFERRED_TYPES, Depth, Spiral, SpiralType

#: The highest fit a spiral of a type other than the depth's preferred one can have:
#: its type term is 0 and the other two terms are each at most 1.0 (1.0 minus an
#: absolute value; float rounding is monotonic, so this holds exactly).
OTHER_TYPE_MAX_FIT = 2.0


def fit(spiral: Spiral, depth: Depth) -> float:
    """How well a memory of `depth` suits `spiral`: its type first, then a utilisation
    near 0.7, then an average depth close to the memory's."""
    return _fit(spiral, SpiralType.preferred_for(depth), depth.weight)


def _fit(spiral: Spiral, preferred: SpiralType, weight: float) -> float:
    # One expression for `fit` and `_best`, so both compute the same floats.
    return (2.0 * (spiral.type is preferred)
            + 1.0 - abs(spiral.node_count / spiral.capacity - 0.7)
            + 1.0 - abs(spiral.average_depth - weight))


def _best(spirals: Iterable[Spiral], depth: Depth) -> Spiral:
    """The best fit, ties to the highest id (`choose_spiral`'s order)."""
    preferred, weight = SpiralType.preferred_for(depth), depth.weight
    return max(spirals, key=lambda s: (_fit(s, preferred, weight), s.id))


def _new(tenant: str, kind: SpiralType, now: float) -> Spiral:
    return Spiral.new(f"spiral_{uuid.uuid4().hex[:16]}", tenant, kind, now)


def choose_spiral(tenant: str, spirals: Mapping[str, Spiral], depth: Depth,
                  max_spirals: int, now: float) -> Spiral | None:
    """The best-fitting spiral with room; a new one of the depth's preferred type when
    no open spiral has that type and the tenant may have another spiral; None when
    every spiral is full and no other may be made."""
    preferred = SpiralType.preferred_for(depth)
    open_spirals = [s for s in spirals.values() if s.has_room]
    if len(spirals) < max_spirals and not any(s.type is preferred for s in open_spirals):
        return _new(tenant, preferred, now)
    if not open_spirals:
        return None
    return _best(open_spirals, depth)


class OpenSpirals:
    """A tenant's spirals with room, by type: `choose` answers as `choose_spiral` over
    all of the tenant's spirals would, looking only at these.

    Not thread-safe, and changed in place: it belongs to one `TenantState`, which is
    copied (with it) before a section changes it."""

    __slots__ = ("_by_type",)

    def __init__(self, spirals: Iterable[Spiral] = ()) -> None:
        self._by_type: dict[SpiralType, dict[str, Spiral]] = {}
        for spiral in spirals:
            self.put(spiral)

    def put(self, spiral: Spiral, previous: Spiral | None = None) -> None:
        """`spiral` replaces `previous` (the tenant's spiral of that id before, if any)."""
        if previous is not None and previous.type is not spiral.type:
            self._by_type.get(previous.type, {}).pop(previous.id, None)
        if spiral.node_count < spiral.capacity:  # `has_room`, a call fewer
            self._by_type.setdefault(spiral.type, {})[spiral.id] = spiral
        else:
            bucket = self._by_type.get(spiral.type)
            if bucket:
                bucket.pop(spiral.id, None)

    def copy(self) -> OpenSpirals:
        # Made without `__init__` (it would only set an empty index to replace): a
        # section's first store copies its state's index.
        copied = object.__new__(OpenSpirals)
        copied._by_type = {kind: bucket.copy() for kind, bucket in self._by_type.items()
                           if bucket}
        return copied

    def all(self) -> list[Spiral]:
        return [s for bucket in self._by_type.values() for s in bucket.values()]

    def choose(self, tenant: str, spiral_count: int, depth: Depth, max_spirals: int,
               now: float) -> Spiral | None:
        """`choose_spiral(tenant, spirals, depth, max_spirals, now)` for a tenant of
        `spiral_count` spirals whose open ones are these."""
        preferred = PREFERRED_TYPES[depth]  # `SpiralType.preferred_for`, a call fewer
        candidates = self._by_type.get(preferred)
        if not candidates:
            if spiral_count < max_spirals:
                return _new(tenant, preferred, now)
            everyone = self.all()
            return _best(everyone, depth) if everyone else None
        # Nearly always one open spiral of the type (they fill one after another): it is
        # the best of them without computing its fit twice.
        best = next(iter(candidates.values())) if len(candidates) == 1 \
            else _best(candidates.values(), depth)
        if _fit(best, preferred, DEPTH_WEIGHTS[depth]) > OTHER_TYPE_MAX_FIT:
            return best  # no spiral of another type can reach it, nor tie
        return _best(self.all(), depth)
