"""Golden-angle placement: where the n-th node of a spiral sits.

Pure functions of the spiral type and the node's index, so any process (or the
rebuild, reading storage) computes the same position for the same slot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from spiral_tasks.frozen import quick_init

GOLDEN_ANGLE_DEG = 137.507764
PHI = 1.618033988749


@quick_init
@dataclass(frozen=True)
class Position:
    index: int
    angle: float
    radius: float
    x: float
    y: float
    turn: int


#: Radius of slot n by spiral type (the original's formulas); each grows with n.
RADIUS: dict[str, Callable[[int], float]] = {
    "fibonacci": lambda n: math.sqrt(n * 1.618),
    "golden": lambda n: float(PHI ** (n / 10)),
    "logarithmic": lambda n: math.exp(0.12 * n),
    "archimedean": lambda n: 1 + 0.1 * n,
    "consciousness": lambda n: float(PHI ** (n / 13)),
}


def radius(spiral_type: str, index: int) -> float:
    return RADIUS[spiral_type](index)


def angle(index: int) -> float:
    return (index * GOLDEN_ANGLE_DEG) % 360.0


def turn(index: int, spiral_turns: int) -> int:
    return index // spiral_turns


#: Positions already computed, by (spiral type, index, turn length). A position is a
#: pure function of those and a frozen value, so it is computed once and shared: a
#: store then places its node (and its spiral finds its radius) by one dict lookup
#: instead of five calls. A tenant's slots are bounded by its spirals' capacities, so
#: few keys recur; past `PLACED_MAX` positions are computed and not kept.
_placed: dict[tuple[str, int, int], Position] = {}
PLACED_MAX = 8192


def place(spiral_type: str, index: int, spiral_turns: int) -> Position:
    """Where slot `index` of a spiral of `spiral_type` sits."""
    # Exact ints only: 3.0 or True would find the entry of 3 or 1 (equal keys) and get
    # a position whose index is not what they gave.
    if type(index) is int and type(spiral_turns) is int:
        key = (spiral_type, index, spiral_turns)
        found = _placed.get(key)
        if found is None:
            found = _place(spiral_type, index, spiral_turns)
            if len(_placed) < PLACED_MAX:
                _placed[key] = found
        return found
    return _place(spiral_type, index, spiral_turns)


def _place(spiral_type: str, index: int, spiral_turns: int) -> Position:
    if index < 0:
        raise ValueError(f"slot index must be >= 0, got {index}")
    theta = angle(index)
    r = radius(spiral_type, index)
    rad = math.radians(theta)
    # Positional, in the fields' order (index, angle, radius, x, y, turn): a class
    # called with keywords builds a dict of them first, and every store places a node.
    return Position(index, theta, r, r * math.cos(rad), r * math.sin(rad),
                    turn(index, spiral_turns))
