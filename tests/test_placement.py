from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_tasks.cache import TenantState
from spiral_tasks.model import Depth, Spiral, SpiralType
from spiral_tasks.placement import OpenSpirals, choose_spiral, fit


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


# --- the index gives choose_spiral's answer -------------------------------------------

def spiral_from(spiral_id: str, kind: SpiralType, capacity: int, count: int,
                average: float) -> Spiral:
    """A spiral with any statistics a record may hold (not only those stores make)."""
    return Spiral(id=spiral_id, tenant="t", type=kind, capacity=capacity, node_count=count,
                  depth_tenths=0, holes=(), average_depth=average, current_radius=0.0,
                  total_turns=0, created=0.0, updated=0.0)


spiral_ids = st.text(alphabet="abcdef", min_size=1, max_size=3)
any_spiral = st.builds(
    spiral_from, spiral_ids, st.sampled_from(SpiralType), st.integers(1, 12),
    st.integers(0, 13),
    st.one_of(st.sampled_from([0.0, 0.2, 0.4, 0.7, 0.9, 1.0]),
              st.floats(-1e6, 1e6, allow_nan=False)))
spiral_sets = st.lists(any_spiral, max_size=12).map(lambda spirals: {s.id: s for s in spirals})


def same_choice(tenant_spirals: dict[str, Spiral], index: OpenSpirals, depth: Depth,
                max_spirals: int) -> None:
    expected = choose_spiral("t", tenant_spirals, depth, max_spirals, 1.0)
    chosen = index.choose("t", len(tenant_spirals), depth, max_spirals, 1.0)
    if expected is None or expected.id not in tenant_spirals:  # None, or a new spiral
        assert chosen is None if expected is None else (
            chosen is not None and chosen.id not in tenant_spirals
            and chosen.type is expected.type and chosen.node_count == 0)
    else:
        assert chosen is expected


@settings(max_examples=400, deadline=None)
@given(spiral_sets, st.sampled_from(Depth), st.integers(0, 14))
def test_the_index_chooses_what_choose_spiral_chooses(
        tenant_spirals: dict[str, Spiral], depth: Depth, max_spirals: int) -> None:
    same_choice(tenant_spirals, OpenSpirals(tenant_spirals.values()), depth, max_spirals)


@settings(max_examples=200, deadline=None)
@given(spiral_sets, st.lists(any_spiral, max_size=20), st.sampled_from(Depth),
       st.integers(0, 14))
def test_the_index_kept_through_changes_chooses_what_choose_spiral_chooses(
        tenant_spirals: dict[str, Spiral], changes: list[Spiral], depth: Depth,
        max_spirals: int) -> None:
    state = TenantState(dict(tenant_spirals))
    state.open_spirals()
    before = state.copy()  # shares the index until one of them changes
    copies = []
    for spiral in changes:  # a spiral of an id already there replaces it, as a store's
        state.put(spiral)
        same_choice(state.spirals, state.open_spirals(), depth, max_spirals)
        copies.append((dict(state.spirals), state.copy()))
    # Copies are not changed by what the state, or another copy, went through after.
    for _, copy in copies:
        changed = copy.copy()
        changed.put(spiral_from("new", SpiralType.GOLDEN, 5, 0, 0.7))
        same_choice(changed.spirals, changed.open_spirals(), depth, max_spirals)
    for spirals, copy in copies:
        same_choice(spirals, copy.open_spirals(), depth, max_spirals)
    same_choice(tenant_spirals, before.open_spirals(), depth, max_spirals)


def test_a_spiral_that_fills_up_leaves_the_index_and_one_with_a_hole_comes_back() -> None:
    full = filled("a", SpiralType.ARCHIMEDEAN, 89, Depth.SURFACE)
    state = TenantState({"a": filled("a", SpiralType.ARCHIMEDEAN, 88, Depth.SURFACE)})
    assert state.open_spirals().choose("t", 1, Depth.SURFACE, 1, 1.0) is state.spirals["a"]
    state.put(full)
    assert state.open_spirals().choose("t", 1, Depth.SURFACE, 1, 1.0) is None
    holed = full.without_node(3, Depth.SURFACE, 1.0, 21)
    state.put(holed)
    assert state.open_spirals().choose("t", 1, Depth.SURFACE, 1, 1.0) is holed
