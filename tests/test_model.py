from __future__ import annotations

import pytest

from spiral_tasks import geometry
from spiral_tasks.model import Depth, Spiral, SpiralType


def grow(spiral: Spiral, depths: list[Depth]) -> Spiral:
    for depth in depths:
        spiral = spiral.with_node(spiral.next_slot(), depth, 0.0, 21)
    return spiral


def test_stats_are_exact_after_adds_and_removes() -> None:
    spiral = grow(Spiral.new("s", "t", SpiralType.FIBONACCI, 0.0),
                  [Depth.SURFACE, Depth.DEEP, Depth.CORE] * 10)
    assert spiral.node_count == 30
    assert spiral.average_depth == pytest.approx((0.2 + 0.7 + 0.9) / 3)
    assert spiral.current_radius == geometry.radius(SpiralType.FIBONACCI, 29)
    assert spiral.total_turns == 1
    spiral = spiral.without_node(29, Depth.CORE, 1.0, 21)
    assert spiral.current_radius == geometry.radius(SpiralType.FIBONACCI, 28)
    assert spiral.depth_tenths == 10 * (2 + 7 + 9) - 9


def test_freed_slots_are_reused_lowest_first() -> None:
    spiral = grow(Spiral.new("s", "t", SpiralType.GOLDEN, 0.0), [Depth.SHALLOW] * 5)
    spiral = spiral.without_node(3, Depth.SHALLOW, 0.0, 21)
    spiral = spiral.without_node(1, Depth.SHALLOW, 0.0, 21)
    assert spiral.holes == (1, 3)
    assert spiral.next_slot() == 1
    spiral = spiral.with_node(1, Depth.SHALLOW, 0.0, 21)
    assert spiral.next_slot() == 3


def test_removing_the_top_slot_trims_trailing_holes() -> None:
    spiral = grow(Spiral.new("s", "t", SpiralType.ARCHIMEDEAN, 0.0), [Depth.DEEP] * 5)
    spiral = spiral.without_node(3, Depth.DEEP, 0.0, 21)
    spiral = spiral.without_node(4, Depth.DEEP, 0.0, 21)
    assert spiral.holes == ()
    assert spiral.high == 3
    assert spiral.current_radius == geometry.radius(SpiralType.ARCHIMEDEAN, 2)


def test_empty_spiral_has_zero_stats() -> None:
    spiral = grow(Spiral.new("s", "t", SpiralType.LOGARITHMIC, 0.0), [Depth.CORE])
    spiral = spiral.without_node(0, Depth.CORE, 0.0, 21)
    assert (spiral.node_count, spiral.average_depth, spiral.current_radius,
            spiral.total_turns) == (0, 0.0, 0.0, 0)


def test_taking_a_used_slot_is_refused() -> None:
    spiral = grow(Spiral.new("s", "t", SpiralType.GOLDEN, 0.0), [Depth.DEEP] * 2)
    with pytest.raises(ValueError, match="not free"):
        spiral.with_node(0, Depth.DEEP, 0.0, 21)


def test_spiral_json_round_trip() -> None:
    spiral = grow(Spiral.new("s", "t", SpiralType.CONSCIOUSNESS, 5.0), [Depth.CORE] * 3)
    assert Spiral.from_json(spiral.to_json()) == spiral


@pytest.mark.parametrize("time", [float("nan"), float("inf"), float("-inf")])
def test_a_spiral_is_never_made_with_a_time_its_record_cannot_hold(time: float) -> None:
    """Spiral records are written without a JSON round trip (`CheckedPut`): every
    spiral is made by `_derived` or read strictly, so its times are checked there."""
    with pytest.raises(ValueError, match="finite"):
        Spiral.new("s", "t", SpiralType.GOLDEN, time)
    spiral = Spiral.new("s", "t", SpiralType.GOLDEN, 1.0)
    with pytest.raises(ValueError, match="finite"):
        spiral.with_node(0, Depth.DEEP, time, 21)
