"""Plain data: memories, spirals and their enums, with JSON in and out.

A memory refers to its spiral by id only: the original embedded the whole spiral in
each node, which broke after a reload. Spirals are immutable values; a store or a
collect produces the next spiral, so a failed commit leaves the cached one intact.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from spiral_tasks import geometry
from spiral_tasks.frozen import quick_init
from spiral_tasks.geometry import Position

JSONDict = dict[str, Any]


class Depth(enum.StrEnum):
    SURFACE = "surface"
    SHALLOW = "shallow"
    DEEP = "deep"
    CORE = "core"
    TRANSCENDENT = "transcendent"

    @property
    def tenths(self) -> int:
        """The depth weight in tenths, so sums over a spiral stay exact integers."""
        return _DEPTH_TENTHS[self]

    @property
    def weight(self) -> float:
        return _DEPTH_WEIGHTS[self]

    @property
    def protected(self) -> bool:
        """Core and transcendent memories are never garbage-collected."""
        return self in PROTECTED_DEPTHS


_DEPTH_TENTHS = {
    Depth.SURFACE: 2,
    Depth.SHALLOW: 4,
    Depth.DEEP: 7,
    Depth.CORE: 9,
    Depth.TRANSCENDENT: 10,
}
_DEPTH_WEIGHTS = {depth: tenths / 10 for depth, tenths in _DEPTH_TENTHS.items()}
#: The depths GC never collects (`Depth.protected`).
PROTECTED_DEPTHS = frozenset({Depth.CORE, Depth.TRANSCENDENT})


class SpiralType(enum.StrEnum):
    FIBONACCI = "fibonacci"
    GOLDEN = "golden"
    LOGARITHMIC = "logarithmic"
    ARCHIMEDEAN = "archimedean"
    CONSCIOUSNESS = "consciousness"

    @property
    def capacity(self) -> int:
        return _CAPACITY[self]

    @classmethod
    def preferred_for(cls, depth: Depth) -> SpiralType:
        """The spiral type a new spiral gets when a memory of `depth` opens it."""
        return _PREFERRED[depth]


_CAPACITY = {
    SpiralType.FIBONACCI: 233,
    SpiralType.GOLDEN: 377,
    SpiralType.LOGARITHMIC: 144,
    SpiralType.ARCHIMEDEAN: 89,
    SpiralType.CONSCIOUSNESS: 610,
}

_PREFERRED = {
    Depth.SURFACE: SpiralType.ARCHIMEDEAN,
    Depth.SHALLOW: SpiralType.FIBONACCI,
    Depth.DEEP: SpiralType.GOLDEN,
    Depth.CORE: SpiralType.LOGARITHMIC,
    Depth.TRANSCENDENT: SpiralType.CONSCIOUSNESS,
}

#: `Depth.weight`, `Depth.tenths` and `SpiralType.preferred_for` as mappings, for the
#: store path: an enum property is a Python call per use, a mapping one C lookup.
DEPTH_WEIGHTS: dict[Depth, float] = _DEPTH_WEIGHTS
DEPTH_TENTHS: dict[Depth, int] = _DEPTH_TENTHS
PREFERRED_TYPES: dict[Depth, SpiralType] = _PREFERRED


@dataclass(frozen=True)
class SpiralStats:
    """The four statistics the rebuild compares and reports."""

    node_count: int
    average_depth: float
    current_radius: float
    total_turns: int

    def to_json(self) -> JSONDict:
        return {
            "node_count": self.node_count,
            "average_depth": self.average_depth,
            "current_radius": self.current_radius,
            "total_turns": self.total_turns,
        }

    def deltas(self, after: SpiralStats) -> JSONDict:
        return {
            "node_count": after.node_count - self.node_count,
            "average_depth": after.average_depth - self.average_depth,
            "current_radius": after.current_radius - self.current_radius,
            "total_turns": after.total_turns - self.total_turns,
        }

    def close_to(self, other: SpiralStats) -> bool:
        return (
            self.node_count == other.node_count
            and self.total_turns == other.total_turns
            and abs(self.average_depth - other.average_depth) <= 1e-9
            and abs(self.current_radius - other.current_radius)
            <= 1e-9 * max(1.0, abs(other.current_radius))
        )


@quick_init
@dataclass(frozen=True)
class Spiral:
    """A spiral's record. Slots are indexes 0..high-1; `holes` are the free ones.

    A new node takes the lowest hole, else slot `high`; so slots stay below the
    capacity and the radius and turn statistics are those of slot `high - 1`, since the
    radius grows with the index. `depth_tenths` is the exact sum of depth weights.
    """

    id: str
    tenant: str
    type: SpiralType
    capacity: int
    node_count: int
    depth_tenths: int
    holes: tuple[int, ...]
    average_depth: float
    current_radius: float
    total_turns: int
    created: float
    updated: float

    @classmethod
    def from_slots(
        cls,
        *,
        id: str,
        tenant: str,
        type: SpiralType,
        used: frozenset[int] | set[int],
        depth_tenths: int,
        created: float,
        updated: float,
        spiral_turns: int,
    ) -> Spiral:
        """The spiral whose nodes occupy the slots `used`: the rebuild's ground truth."""
        high = max(used) + 1 if used else 0
        holes = tuple(i for i in range(high) if i not in used)
        return cls._derived(id, tenant, type, len(used), depth_tenths, holes, high,
                            created, updated, spiral_turns)

    @classmethod
    def _derived(
        cls, id: str, tenant: str, type: SpiralType, node_count: int, depth_tenths: int,
        holes: tuple[int, ...], high: int, created: float, updated: float, spiral_turns: int,
    ) -> Spiral:
        # Every spiral is made here or read strictly (`from_json`), so its record needs
        # no round trip to be written (`CheckedPut`); the times are all left to check.
        if created - created != 0.0 or updated - updated != 0.0:
            raise ValueError(f"spiral {id}: times must be finite, got {created!r}, "
                             f"{updated!r}")
        # The last slot's radius and turn, as its position has them (computed once per
        # slot: `geometry.place`); an empty spiral has neither.
        last = geometry.place(type, high - 1, spiral_turns) if high else None
        # Positional, in the fields' order: a class called with keywords builds a dict
        # of them first (every store makes a spiral here).
        return cls(
            id,
            tenant,
            type,
            _CAPACITY[type],  # `type.capacity`, a call fewer
            node_count,
            depth_tenths,
            holes,
            depth_tenths / 10 / node_count if node_count else 0.0,  # average_depth
            last.radius if last is not None else 0.0,  # current_radius
            last.turn if last is not None else 0,  # total_turns
            created,
            updated,
        )

    @classmethod
    def new(cls, id: str, tenant: str, type: SpiralType, now: float) -> Spiral:
        """An empty spiral (its turns are 0 whatever the turn length)."""
        return cls._derived(id, tenant, type, 0, 0, (), 0, now, now, spiral_turns=1)

    @property
    def high(self) -> int:
        return self.node_count + len(self.holes)

    @property
    def has_room(self) -> bool:
        return self.node_count < self.capacity

    @property
    def utilisation(self) -> float:
        return self.node_count / self.capacity

    def next_slot(self) -> int:
        holes = self.holes
        return holes[0] if holes else self.node_count  # no holes: `high` is the count

    def with_node(self, slot: int, depth: Depth, now: float, spiral_turns: int) -> Spiral:
        holes, high = self.holes, self.node_count + len(self.holes)
        if slot in holes:
            holes = holes[1:] if slot == holes[0] else tuple(h for h in holes if h != slot)
        elif slot == high:
            high += 1
        else:
            raise ValueError(f"slot {slot} of spiral {self.id} is not free")
        return self._derived(self.id, self.tenant, self.type, self.node_count + 1,
                             self.depth_tenths + _DEPTH_TENTHS[depth], holes, high,
                             self.created, now, spiral_turns)

    def without_node(self, slot: int, depth: Depth, now: float, spiral_turns: int) -> Spiral:
        high = self.high
        holes = set(self.holes)
        if slot == high - 1:
            high -= 1
            while high and (high - 1) in holes:
                high -= 1
                holes.discard(high)
        else:
            holes.add(slot)
        return self._derived(self.id, self.tenant, self.type, self.node_count - 1,
                             self.depth_tenths - depth.tenths, tuple(sorted(holes)), high,
                             self.created, now, spiral_turns)

    def stats(self) -> SpiralStats:
        return SpiralStats(self.node_count, self.average_depth, self.current_radius,
                           self.total_turns)

    def to_json(self) -> JSONDict:
        # Every field, in its order, as it is, but the two JSON has no type for: the
        # instance's dict holds exactly the fields in that order (`quick_init` fills it
        # so), and a C copy of it costs half the dict built key by key (every store
        # writes a spiral). `tests/test_store_path_equivalence.py` holds it to that.
        record = self.__dict__.copy()
        record["type"] = self.type._value_  # `.value` is a Python-level enum property
        record["holes"] = list(self.holes)
        return record

    @classmethod
    def from_json(cls, data: JSONDict) -> Spiral:
        """A spiral from its record; `ValueError` (or `TypeError`, `KeyError`) naming
        the field when the record does not hold a spiral, rather than a spiral built
        from whatever was there."""
        data = _object(data)
        holes = _list(data, "holes")
        if not all(_is_int(h) and h >= 0 for h in holes):
            raise ValueError("holes: must be slot numbers")
        return cls(
            id=_text(data, "id"),
            tenant=_text(data, "tenant"),
            type=SpiralType(data["type"]),
            capacity=_count(data, "capacity"),
            node_count=_count(data, "node_count"),
            depth_tenths=_count(data, "depth_tenths"),
            holes=tuple(holes),
            average_depth=_number(data, "average_depth"),
            current_radius=_number(data, "current_radius"),
            total_turns=_count(data, "total_turns"),
            created=_number(data, "created"),
            updated=_number(data, "updated"),
        )


@quick_init
@dataclass(frozen=True)
class Memory:
    id: str
    tenant: str
    content: str
    type: str
    depth: Depth
    sigil: str
    spiral_id: str
    position: Position
    associations: tuple[str, ...]
    created: float
    last_accessed: float
    access_count: int
    strength: float

    def accessed(self, now: float) -> Memory:
        """Retrieval reinforces a memory: it is fresher, more used and stronger."""
        return replace(self, last_accessed=now, access_count=self.access_count + 1,
                       strength=min(1.0, round(self.strength + 0.1, 10)))

    def position_json(self) -> JSONDict:
        """The position's fields (index, angle, radius, x, y, turn), as they are."""
        return self.position.__dict__.copy()  # see `to_json`

    def to_json(self) -> JSONDict:
        # As `Spiral.to_json`: the fields in their order, copied in C, but the three
        # JSON has no type for (every store writes a memory).
        record = self.__dict__.copy()
        record["depth"] = self.depth._value_
        record["position"] = self.position.__dict__.copy()  # `position_json`, inline
        record["associations"] = list(self.associations)
        return record

    @staticmethod
    def checked_json(data: Any) -> JSONDict:
        """`data`, if it is a memory record: every field present, of its type, numbers
        finite; else `ValueError` (or `TypeError`, `KeyError`) naming the field. What
        `from_json` reads, checked without building a memory: the rebuild reads every
        node so."""
        data = _object(data)
        _texts(data, _MEMORY_TEXTS)
        if data["depth"] not in _DEPTH_VALUES:
            raise ValueError(f"depth: {str(data['depth'])[:40]!r} is not a depth")
        position = _object(data["position"], "position")
        _counts(position, _POSITION_COUNTS)
        _numbers(position, _POSITION_NUMBERS)
        _numbers(data, _MEMORY_NUMBERS)
        _counts(data, _MEMORY_COUNTS)
        associations = _list(data, "associations")
        if associations and not all(type(a) is str for a in associations):
            raise ValueError("associations: must be memory ids")
        checked: JSONDict = data
        return checked

    @classmethod
    def from_json(cls, data: JSONDict) -> Memory:
        """A memory from its record; `ValueError` (or `TypeError`, `KeyError`) naming
        the field when the record does not hold a memory (see `checked_json`)."""
        data = cls.checked_json(data)
        p = data["position"]
        return cls(
            id=data["id"],
            tenant=data["tenant"],
            content=data["content"],
            type=data["type"],
            depth=Depth(data["depth"]),
            sigil=data["sigil"],
            spiral_id=data["spiral_id"],
            position=Position(index=p["index"], angle=float(p["angle"]),
                              radius=float(p["radius"]), x=float(p["x"]), y=float(p["y"]),
                              turn=p["turn"]),
            associations=tuple(data["associations"]),
            created=float(data["created"]),
            last_accessed=float(data["last_accessed"]),
            access_count=data["access_count"],
            strength=float(data["strength"]),
        )


_MEMORY_TEXTS = ("id", "tenant", "content", "type", "sigil", "spiral_id")
_MEMORY_NUMBERS = ("created", "last_accessed", "strength")
_MEMORY_COUNTS = ("access_count",)
_POSITION_NUMBERS = ("angle", "radius", "x", "y")
_POSITION_COUNTS = ("index", "turn")
_DEPTH_VALUES = frozenset(d.value for d in Depth)


# --- reading records strictly: a stored record is what it says, or an error ----------
# `type(v) is ...` rather than isinstance: decoded JSON holds exact types, bool is not a
# number here, and a rebuild runs these for every field of every node.

def _object(value: Any, name: str = "record") -> JSONDict:
    if type(value) is not dict:
        raise TypeError(f"{name}: must be a JSON object, got {type(value).__name__}")
    return value


def _is_int(value: Any) -> bool:
    return type(value) is int


def _text(data: JSONDict, name: str) -> str:
    value = data[name]
    if type(value) is not str:
        raise TypeError(f"{name}: must be a string, got {type(value).__name__}")
    return value


def _count(data: JSONDict, name: str) -> int:
    value = data[name]
    if type(value) is not int or value < 0:
        raise ValueError(f"{name}: must be a whole number of at least 0, got "
                         f"{str(value)[:40]!r}")
    return value


def _number(data: JSONDict, name: str) -> float:
    value = data[name]
    kind = type(value)
    if kind is float and value - value == 0.0:  # finite: inf - inf and nan are nan
        return value  # type: ignore[no-any-return]
    if kind is int:
        return float(value)
    raise ValueError(f"{name}: must be a finite number, got {str(value)[:40]!r}")


def _texts(data: JSONDict, names: tuple[str, ...]) -> None:
    """`_text` of each of `names`, in one call (a rebuild checks every node)."""
    for name in names:
        if type(data[name]) is not str:
            _text(data, name)


def _counts(data: JSONDict, names: tuple[str, ...]) -> None:
    for name in names:
        value = data[name]
        if type(value) is not int or value < 0:
            _count(data, name)


def _numbers(data: JSONDict, names: tuple[str, ...]) -> None:
    for name in names:
        value = data[name]
        kind = type(value)
        if not (kind is int or (kind is float and value - value == 0.0)):
            _number(data, name)


def _list(data: JSONDict, name: str) -> list[Any]:
    value = data[name]
    if type(value) is not list:
        raise TypeError(f"{name}: must be a list, got {type(value).__name__}")
    return value
