from __future__ import annotations

import math

import pytest

from spiral_tasks import geometry
from spiral_tasks.model import SpiralType


def test_golden_angle_and_turns() -> None:
    p = geometry.place(SpiralType.FIBONACCI, 5, spiral_turns=21)
    assert p.angle == pytest.approx((5 * 137.507764) % 360)
    assert p.turn == 0
    assert geometry.place(SpiralType.FIBONACCI, 21, 21).turn == 1
    assert geometry.place(SpiralType.FIBONACCI, 44, 21).turn == 2


@pytest.mark.parametrize(("kind", "n", "expected"), [
    (SpiralType.FIBONACCI, 10, math.sqrt(10 * 1.618)),
    (SpiralType.GOLDEN, 10, 1.618033988749),
    (SpiralType.LOGARITHMIC, 10, math.exp(1.2)),
    (SpiralType.ARCHIMEDEAN, 10, 2.0),
    (SpiralType.CONSCIOUSNESS, 13, 1.618033988749),
])
def test_radius_formulas(kind: SpiralType, n: int, expected: float) -> None:
    assert geometry.radius(kind, n) == pytest.approx(expected)


@pytest.mark.parametrize("kind", list(SpiralType))
def test_radius_grows_with_the_slot(kind: SpiralType) -> None:
    radii = [geometry.radius(kind, n) for n in range(kind.capacity)]
    assert radii == sorted(radii)


def test_cartesian_coordinates_match_polar() -> None:
    p = geometry.place(SpiralType.GOLDEN, 7, 21)
    assert math.hypot(p.x, p.y) == pytest.approx(p.radius)
    assert math.degrees(math.atan2(p.y, p.x)) % 360 == pytest.approx(p.angle)


def test_negative_slot_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        geometry.place(SpiralType.GOLDEN, -1, 21)
