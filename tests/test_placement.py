from __future__ import annotations

from spiral_tasks.model import Depth, Spiral, SpiralType
from spiral_tasks.placement import choose_spiral, fit


def filled(spiral_id: str, kind: SpiralType, count: int, depth: Depth) -> Spiral:
    spiral = Spiral.new(spiral_id, "t", kind, 0.0)
    for _ in range(count):
        spiral = spiral.with_node(spiral.next_slot(), depth, 0.0, 21)
    return spiral


def test_a_depth_without_an_open_spiral_of_its_type_gets_a_new_one() -> None:
    spirals = {"a": filled("a", SpiralType.FIBONACCI, 3, Depth.SHALLOW)}
    chosen = choose_spiral("t", spirals, Depth.DEEP, 89, 1.0)
    assert chosen is not None
    assert chosen.type is SpiralType.GOLDEN
    assert chosen.id not in spirals


def test_the_best_fitting_open_spiral_is_chosen() -> None:
    spirals = {"a": filled("a", SpiralType.FIBONACCI, 3, Depth.SHALLOW),
               "b": filled("b", SpiralType.GOLDEN, 3, Depth.DEEP)}
    assert choose_spiral("t", spirals, Depth.DEEP, 89, 1.0) is spirals["b"]
    assert fit(spirals["b"], Depth.DEEP) > fit(spirals["a"], Depth.DEEP)


def test_at_the_spiral_limit_any_open_spiral_serves() -> None:
    spirals = {"a": filled("a", SpiralType.FIBONACCI, 3, Depth.SHALLOW)}
    assert choose_spiral("t", spirals, Depth.CORE, 1, 1.0) is spirals["a"]


def test_none_when_all_are_full_at_the_limit() -> None:
    spirals = {"a": filled("a", SpiralType.ARCHIMEDEAN, 89, Depth.SURFACE)}
    assert choose_spiral("t", spirals, Depth.SURFACE, 1, 1.0) is None
