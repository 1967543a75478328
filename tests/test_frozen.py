"""`quick_init`: the same values as a frozen dataclass's own __init__, built faster."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field

import pytest

from spiral_tasks.frozen import quick_init
from spiral_tasks.model import Depth, Memory, Spiral, SpiralType
from spiral_tasks.storage.base import CheckedPut, Put


@dataclass(frozen=True)
class Plain:
    x: int
    y: str
    z: float = 1.5


@quick_init
@dataclass(frozen=True)
class Quick:
    x: int
    y: str
    z: float = 1.5


def fields_of(value: object) -> dict[str, object]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}  # type: ignore[arg-type]


@pytest.mark.parametrize(("args", "kwargs"), [((1, "a"), {}), ((1,), {"y": "b"}),
                                              ((), {"x": 2, "y": "c", "z": 3.0})])
def test_it_builds_what_the_dataclass_builds(args: tuple[object, ...],
                                             kwargs: dict[str, object]) -> None:
    assert fields_of(Quick(*args, **kwargs)) == fields_of(Plain(*args, **kwargs))  # type: ignore[arg-type]


def test_the_value_stays_a_frozen_dataclass() -> None:
    value = Quick(1, "a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.x = 2  # type: ignore[misc]
    assert value == Quick(1, "a")
    assert hash(value) == hash(Quick(1, "a"))
    assert value != Quick(2, "a")
    assert repr(value) == "Quick(x=1, y='a', z=1.5)"
    assert dataclasses.replace(value, z=0.0) == Quick(1, "a", 0.0)
    assert pickle.loads(pickle.dumps(value)) == value
    match value:
        case Quick(x, y):
            assert (x, y) == (1, "a")
    with pytest.raises(TypeError):
        Quick(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick(1, "a", 1.0, 2)  # type: ignore[call-arg]


def test_what_it_cannot_build_alike_is_refused() -> None:
    @dataclass(frozen=True)
    class Factory:
        items: list[int] = field(default_factory=list)

    @dataclass
    class Mutable:
        x: int

    for cls in (Factory, Mutable, int):
        with pytest.raises(TypeError):
            quick_init(cls)


def test_the_engines_values_round_trip_through_their_records() -> None:
    spiral = Spiral.new("s", "t", SpiralType.GOLDEN, 1.0).with_node(0, Depth.DEEP, 2.0, 21)
    assert Spiral.from_json(spiral.to_json()) == spiral
    memory = Memory.from_json({
        "id": "m", "tenant": "t", "content": "c", "type": "general", "depth": "deep",
        "sigil": "0" * 40, "spiral_id": "s",
        "position": {"index": 0, "angle": 0.0, "radius": 1.0, "x": 1.0, "y": 0.0,
                     "turn": 0},
        "associations": ["a"], "created": 1.0, "last_accessed": 1.0, "access_count": 0,
        "strength": 0.5})
    assert Memory.from_json(memory.to_json()) == memory
    assert CheckedPut("k", 1) != Put("k", 1)  # each its own class, as dataclasses compare
    assert isinstance(CheckedPut("k", 1), Put)
