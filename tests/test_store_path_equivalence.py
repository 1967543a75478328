"""What the store path's shortcuts stand for: a validated name remembered answers as the
pattern does; a state's copy carries every field, as its `__init__` would; a memory
backend's `read_many` reads as the base class's; a position remembered is the one
computed; a snapshot request is asked with the generation a local lock found; records
copied from a value's fields are the records built key by key."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_tasks import geometry, validation
from spiral_tasks.cache import UNKNOWN, TenantState
from spiral_tasks.coordination.base import Snapshot, resolve
from spiral_tasks.coordination.local import LocalCoordinator
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.model import (
    DEPTH_TENTHS,
    DEPTH_WEIGHTS,
    PREFERRED_TYPES,
    PROTECTED_DEPTHS,
    Depth,
    Memory,
    Spiral,
    SpiralType,
)
from spiral_tasks.storage.base import Put, Storage
from spiral_tasks.storage.memory import MemoryStorage

NAMES = st.one_of(st.sampled_from(["bench", "a", "x" * 64, "x" * 65, "-a", "a b", "é", ""]),
                  st.text(max_size=8), st.integers(), st.none())


def _by_pattern(value: Any) -> bool:
    return isinstance(value, str) and validation.NAME_PATTERN.fullmatch(value) is not None


@settings(max_examples=400, deadline=None)
@given(names=st.lists(NAMES, max_size=12))
def test_a_remembered_name_answers_as_the_pattern(names: list[Any]) -> None:
    for value in names * 2:  # each a second time, when it may be remembered
        if _by_pattern(value):
            assert validation.name("tenant", value) is value
        else:
            with pytest.raises(InvalidArgument):
                validation.name("tenant", value)


def test_a_str_subclass_is_never_taken_for_a_remembered_name() -> None:
    class Sneaky(str):
        pass

    validation.name("tenant", "bench")
    validation.name("tenant", Sneaky("other"))  # checked, and not remembered
    assert all(type(v) is str for v in validation._NAMES_SEEN)
    with pytest.raises(InvalidArgument):
        validation.name("tenant", Sneaky("not a name"))


def test_remembered_names_stay_bounded() -> None:
    for i in range(validation.NAMES_REMEMBERED * 3):
        validation.name("tenant", f"t{i}")
    assert len(validation._NAMES_SEEN) <= validation.NAMES_REMEMBERED


def test_a_copy_carries_every_field_as_init_would() -> None:
    state = TenantState({}, 3, "g1", ("k",), {"seq": 1}, None, False, {})
    copied = state.copy()
    assert state._shared
    assert copied._shared
    names = [f.name for f in dataclasses.fields(TenantState)]
    assert list(vars(copied)) == names  # all of them, in `__init__`'s order
    for name in names:
        if name != "_shared":
            assert getattr(copied, name) is getattr(state, name)
    assert TenantState().audit_head is UNKNOWN


@settings(max_examples=200, deadline=None)
@given(stored=st.dictionaries(st.sampled_from(["a", "b", "c"]),
                              st.sampled_from([b"1", b'{"seq": 2}', b"[", b"\xff",
                                               b'"x"', b"\x01sealed?"]), max_size=3),
       keys=st.lists(st.one_of(st.sampled_from(["a", "b", "c", "d"]),
                               st.sampled_from(["", 3, "x" * 1025])), max_size=4))
def test_memory_read_many_reads_as_the_base_class(stored: dict[str, bytes],
                                                  keys: list[Any]) -> None:
    storage = MemoryStorage()
    storage._data.update(stored)

    def outcome(read: Any) -> Any:
        try:
            return ("ok", read(keys))
        except Exception as exc:
            return ("raised", type(exc), str(exc))

    assert outcome(storage.read_many) == outcome(lambda k: Storage.read_many(storage, k))


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(list(SpiralType)),
       index=st.one_of(st.integers(min_value=0, max_value=700), st.sampled_from([3.0, True])),
       turns=st.integers(min_value=1, max_value=60))
def test_a_remembered_position_is_the_one_computed(kind: SpiralType, index: Any,
                                                   turns: int) -> None:
    """`geometry.place` answers from what it computed before: the same position, field
    for field and type for type (an index of 3.0 or True is not taken for 3 or 1)."""
    computed = geometry._place(kind, index, turns)
    for _ in range(2):  # the second time from the table, if it kept it
        placed = geometry.place(kind, index, turns)
        assert placed == computed
        assert [type(v) for v in dataclasses.astuple(placed)] == \
            [type(v) for v in dataclasses.astuple(computed)]
    spiral = Spiral.from_slots(id="s", tenant="t", type=kind, used={int(index)},
                               depth_tenths=2, created=1.0, updated=1.0, spiral_turns=turns)
    # A spiral's radius and turns, taken from its last slot's position, are the formulas'.
    assert spiral.current_radius == geometry.radius(kind, int(index))
    assert spiral.total_turns == geometry.turn(int(index), turns)


def test_remembered_positions_stay_bounded() -> None:
    saved = dict(geometry._placed)
    try:
        for i in range(geometry.PLACED_MAX + 10):
            geometry.place(SpiralType.ARCHIMEDEAN, i, 7)
        assert len(geometry._placed) <= geometry.PLACED_MAX
    finally:  # the rest of this process's tests place as before
        geometry._placed.clear()
        geometry._placed.update(saved)


def test_a_local_snapshot_request_is_asked_at_the_generation_found() -> None:
    """A local coordinator knows the tenant's generation before it reads: a callable
    request is given it, and answering None takes no snapshot (a section whose cache
    is current builds no request at all); a request not knowing it (None) is asked for
    the distributed coordinators' sake."""
    storage = MemoryStorage()
    coordinator = LocalCoordinator(storage)
    with coordinator.critical("t") as fence:
        fence.commit([Put("t:x", 1)])
        generation = fence.generation
    asked: list[str | None] = []

    def request(found: str | None) -> Snapshot | None:
        asked.append(found)
        return None if found == generation else Snapshot("t:", (), found)

    with coordinator.critical("t", snapshot=request) as fence:
        assert fence.snapshot is None
    assert asked == [generation]
    assert resolve(request) is not None
    assert asked[-1] is None


def test_the_store_paths_mappings_are_the_properties() -> None:
    """The mappings the store path reads instead of enum properties say what the
    properties say."""
    for depth in Depth:
        assert DEPTH_WEIGHTS[depth] == depth.weight
        assert DEPTH_TENTHS[depth] == depth.tenths
        assert PREFERRED_TYPES[depth] is SpiralType.preferred_for(depth)
        assert (depth in PROTECTED_DEPTHS) == (depth in (Depth.CORE, Depth.TRANSCENDENT))


@settings(max_examples=200, deadline=None)
@given(used=st.frozensets(st.integers(min_value=0, max_value=88), max_size=20))
def test_the_next_slot_is_the_lowest_hole_else_high(used: frozenset[int]) -> None:
    spiral = Spiral.from_slots(id="s", tenant="t", type=SpiralType.ARCHIMEDEAN, used=used,
                               depth_tenths=2 * len(used), created=1.0, updated=1.0,
                               spiral_turns=7)
    assert spiral.next_slot() == (spiral.holes[0] if spiral.holes else spiral.high)
    assert spiral.next_slot() == min(set(range(spiral.high + 1)) - used)


def _memory_fields(memory: Memory) -> dict[str, Any]:
    """A memory's record key by key: what `Memory.to_json` wrote before it copied."""
    p = memory.position
    return {"id": memory.id, "tenant": memory.tenant, "content": memory.content,
            "type": memory.type, "depth": memory.depth.value, "sigil": memory.sigil,
            "spiral_id": memory.spiral_id,
            "position": {"index": p.index, "angle": p.angle, "radius": p.radius, "x": p.x,
                         "y": p.y, "turn": p.turn},
            "associations": list(memory.associations), "created": memory.created,
            "last_accessed": memory.last_accessed, "access_count": memory.access_count,
            "strength": memory.strength}


def _spiral_fields(spiral: Spiral) -> dict[str, Any]:
    """A spiral's record key by key: what `Spiral.to_json` wrote before it copied."""
    return {"id": spiral.id, "tenant": spiral.tenant, "type": spiral.type.value,
            "capacity": spiral.capacity, "node_count": spiral.node_count,
            "depth_tenths": spiral.depth_tenths, "holes": list(spiral.holes),
            "average_depth": spiral.average_depth, "current_radius": spiral.current_radius,
            "total_turns": spiral.total_turns, "created": spiral.created,
            "updated": spiral.updated}


def _same_record(made: Any, expected: Any) -> None:
    """Equal, key order, types and JSON bytes alike (nested dicts and lists too)."""
    assert made == expected
    assert orjson.dumps(made) == orjson.dumps(expected)
    assert type(made) is type(expected)
    if isinstance(expected, dict):
        assert list(made) == list(expected)
        for key in expected:
            _same_record(made[key], expected[key])
    elif isinstance(expected, list):
        for mine, theirs in zip(made, expected, strict=True):
            _same_record(mine, theirs)


TIMES = st.floats(min_value=0, max_value=4e9)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(SpiralType)),
       used=st.frozensets(st.integers(min_value=0, max_value=88), max_size=12),
       created=TIMES, updated=TIMES, turns=st.integers(min_value=1, max_value=40),
       depth=st.sampled_from(list(Depth)), content=st.text(max_size=20),
       associations=st.lists(st.text(min_size=1, max_size=6), max_size=3),
       accessed=st.integers(min_value=0, max_value=3))
def test_records_copied_from_fields_are_the_records_built_key_by_key(
        kind: SpiralType, used: frozenset[int], created: float, updated: float, turns: int,
        depth: Depth, content: str, associations: list[str], accessed: int) -> None:
    spiral = Spiral.from_slots(id="spiral_1", tenant="t", type=kind, used=used,
                               depth_tenths=2 * len(used), created=created,
                               updated=updated, spiral_turns=turns)
    _same_record(spiral.to_json(), _spiral_fields(spiral))
    _same_record(Spiral.from_json(spiral.to_json()).to_json(), _spiral_fields(spiral))
    memory = Memory("m1", "t", content, "general", depth, "sigil", spiral.id,
                    geometry.place(kind, max(used, default=0), turns), tuple(associations),
                    created, created, 0, 0.5)
    for _ in range(accessed):  # `replace` builds it again, through `__init__`
        memory = memory.accessed(updated)
    _same_record(memory.to_json(), _memory_fields(memory))
    _same_record(memory.position_json(), _memory_fields(memory)["position"])
    _same_record(Memory.from_json(memory.to_json()).to_json(), _memory_fields(memory))
