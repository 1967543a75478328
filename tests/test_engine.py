"""Store, retrieve, collect and stats on every backend."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from spiral_tasks import geometry
from spiral_tasks.coordination.local import LocalCoordinator
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import CapacityExceeded, InvalidArgument
from spiral_tasks.keys import TenantKeys
from spiral_tasks.model import Depth, SpiralType
from spiral_tasks.security.sigils import index_name
from tests.conftest import Clock, EngineFactory
from tests.invariants import assert_consistent


def test_store_places_the_memory_and_returns_its_handle(engine: SpiralMemory) -> None:
    result = engine.store("first light", type="note", depth="deep")
    handle = result.to_json()
    assert handle["created"] is True
    assert handle["tenant"] == "default"
    assert handle["position"] == {"index": 0, "angle": 0.0, "radius": 1.0, "x": 1.0,
                                  "y": 0.0, "turn": 0}
    assert len(handle["sigil"]) == 40
    record = engine.storage.get(TenantKeys("default").memory(result.stored.id))
    assert record["spiral_id"] == result.stored.spiral_id
    assert "spiral" not in record  # a reference, never the embedded spiral
    assert record["content"] == "first light"
    assert_consistent(engine)


def test_equal_contents_get_distinct_sigils_and_records(engine: SpiralMemory) -> None:
    a = engine.store("same words")
    b = engine.store("same words")
    assert a.stored.sigil != b.stored.sigil
    assert a.stored.id != b.stored.id
    keys = TenantKeys("default")
    assert engine.storage.get(keys.sigil(index_name(a.stored.sigil))) == a.stored.id
    assert engine.storage.get(keys.sigil(index_name(b.stored.sigil))) == b.stored.id
    assert assert_consistent(engine) == 2


def test_memory_id_is_an_idempotency_key(engine: SpiralMemory) -> None:
    first = engine.store("once", memory_id="job-17")
    again = engine.store("twice?", memory_id="job-17")
    assert first.created
    assert not again.created
    assert again.stored == first.stored
    assert assert_consistent(engine) == 1


def test_positions_follow_the_golden_angle(engine: SpiralMemory) -> None:
    results = [engine.store(f"m{i}") for i in range(30)]
    spiral_ids = {r.stored.spiral_id for r in results}
    assert len(spiral_ids) == 1
    for n, result in enumerate(results):
        assert result.stored.position == geometry.place(SpiralType.FIBONACCI, n, 21)


def test_statistics_are_exact_after_stores_and_collects(engine: SpiralMemory) -> None:
    depths = ["surface", "shallow", "deep", "core", "transcendent"]
    stored = [engine.store(f"m{i}", depth=depths[i % 5]) for i in range(60)]
    for result in stored[::3]:
        assert engine.collect(result.stored.id)
    assert_consistent(engine)
    survivors = [r.stored for r in stored if r not in stored[::3]]
    for spiral in engine.stats().spirals:
        mine = [m for m in survivors if m.spiral_id == spiral.id]
        assert spiral.node_count == len(mine)
        assert spiral.average_depth == pytest.approx(
            sum(m.depth.weight for m in mine) / len(mine))
        top = max(m.position.index for m in mine)
        assert spiral.current_radius == pytest.approx(geometry.radius(spiral.type, top))
        assert spiral.total_turns == top // 21
    assert engine.rebuild_stats().clean


def test_each_depth_opens_a_spiral_of_its_type(engine: SpiralMemory) -> None:
    for depth in Depth:
        engine.store("x", depth=depth.value)
    types = {s.type for s in engine.stats().spirals}
    assert types == {SpiralType.preferred_for(d) for d in Depth}


def test_new_spirals_up_to_the_limit_then_a_clear_error(make_engine: EngineFactory,
                                                        clock: Clock) -> None:
    engine = make_engine(max_memory_spirals=2)
    for _ in range(89):  # fills one archimedean spiral (capacity 89)
        engine.store("s", depth="surface")
    for _ in range(144):  # fills one logarithmic spiral (capacity 144)
        engine.store("c", depth="core")
    assert len(engine.stats().spirals) == 2
    before = engine.storage.keys("")
    with pytest.raises(CapacityExceeded, match="spirals"):
        engine.store("no room", depth="core")
    assert sorted(engine.storage.keys("")) == sorted(before)
    clock.advance(10 * 3600)  # surface memories expire: GC now has something to take
    result = engine.store("room again", depth="core")
    assert result.created
    surface = next(s for s in engine.stats().spirals if s.type is SpiralType.ARCHIMEDEAN)
    assert surface.node_count < 89  # expired surface memories were collected
    assert result.stored.spiral_id == surface.id  # the only spiral with room
    assert assert_consistent(engine) == surface.node_count + 144


def test_node_limit_evicts_the_least_valuable(make_engine: EngineFactory,
                                              clock: Clock) -> None:
    engine = make_engine(max_memory_nodes=5)
    weak = engine.store("weak", depth="surface")
    clock.advance(1)
    for i in range(4):
        engine.store(f"deep{i}", depth="deep")
    engine.store("one too many", depth="deep")
    assert engine.retrieve(weak.stored.id) is None
    assert assert_consistent(engine) == 5


def test_node_limit_with_only_protected_memories_refuses(make_engine: EngineFactory) -> None:
    engine = make_engine(max_memory_nodes=3)
    for _ in range(3):
        engine.store("core", depth="core")
    with pytest.raises(CapacityExceeded, match="limit is 3"):
        engine.store("more", depth="shallow")
    assert assert_consistent(engine) == 3


def test_retrieve_persists_access(make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine()
    stored = engine.store("remember me")
    clock.advance(60)
    got = engine.retrieve(stored.stored.id)
    assert got is not None
    assert got.access_count == 1
    assert got.last_accessed == clock.now
    fresh = make_engine()  # a new engine reads storage, not the first one's memory
    record = fresh.storage.get(TenantKeys("default").memory(stored.stored.id))
    assert record["access_count"] == 1
    assert record["last_accessed"] == clock.now
    assert record["strength"] > stored.stored.strength


def test_retrieve_of_unknown_memory_is_none(engine: SpiralMemory) -> None:
    assert engine.retrieve("nope") is None


def test_collect_deletes_everything_of_a_memory(engine: SpiralMemory) -> None:
    kept = engine.store("kept")
    gone = engine.store("gone")
    assert engine.collect(gone.stored.id) is True
    assert engine.collect(gone.stored.id) is False
    keys = TenantKeys("default")
    assert engine.storage.get(keys.memory(gone.stored.id)) is None
    assert engine.storage.get(keys.sigil(index_name(gone.stored.sigil))) is None
    assert [m for m, _ in engine.storage.index_range(keys.gc_queue)] == [kept.stored.id]
    assert assert_consistent(engine) == 1


def test_associations_link_memories_of_the_same_tenant(engine: SpiralMemory) -> None:
    a = engine.store("a")
    links = [a.stored.id, a.stored.id]
    b = engine.store("b", associations=links)
    links.append("mutated later")
    assert b.stored.associations == (a.stored.id,)
    other = engine.store("elsewhere", tenant="other")
    with pytest.raises(InvalidArgument, match=f"associations: no memory {other.stored.id}"):
        engine.store("c", associations=[other.stored.id])


BAD_CALLS: list[tuple[dict[str, Any], str]] = [
    ({"content": 42}, "content"),
    ({"content": "x" * (1024 * 1024 + 1)}, "content"),
    ({"content": "bad \udc80"}, "content"),
    ({"content": "x", "type": "no spaces"}, "type"),
    ({"content": "x", "depth": "abyssal"}, "depth"),
    ({"content": "x", "tenant": "../etc"}, "tenant"),
    ({"content": "x", "tenant": ""}, "tenant"),
    ({"content": "x", "associations": "not-a-list"}, "associations"),
    ({"content": "x", "associations": ["missing"]}, "associations"),
    ({"content": "x", "associations": [None]}, "associations"),
    ({"content": "x", "memory_id": "has space"}, "memory_id"),
    ({"content": "x", "memory_id": ""}, "memory_id"),
    ({"content": "x", "memory_id": 0}, "memory_id"),
    ({"content": "x", "memory_id": False}, "memory_id"),
    ({"content": "x", "memory_id": []}, "memory_id"),
    ({"content": "x", "associations": {"already-here": 1}}, "associations"),
    ({"content": "x", "associations": {"a", "b"}}, "associations"),
    ({"content": "x", "associations": ["a"] * 1001}, "associations"),
    ({"content": "x", "tenant": "t" * 1_000_000}, "tenant"),
]


@pytest.mark.parametrize(("kwargs", "argument"), BAD_CALLS)
def test_bad_input_names_the_argument_and_writes_nothing(
        engine: SpiralMemory, kwargs: dict[str, Any], argument: str) -> None:
    engine.store("already here")
    before = {k: engine.storage.get(k) for k in engine.storage.keys("")}
    with pytest.raises(InvalidArgument) as caught:
        engine.store(**kwargs)
    assert caught.value.argument == argument
    assert str(caught.value).startswith(f"{argument}: ")
    assert {k: engine.storage.get(k) for k in engine.storage.keys("")} == before


def test_tenants_are_isolated(engine: SpiralMemory) -> None:
    engine.store("a", tenant="acme", memory_id="shared-id")
    engine.store("b", tenant="globex", memory_id="shared-id")
    assert engine.retrieve("shared-id", tenant="acme").content == "a"  # type: ignore[union-attr]
    assert engine.retrieve("shared-id", tenant="globex").content == "b"  # type: ignore[union-attr]
    assert engine.collect("shared-id", tenant="acme")
    assert engine.retrieve("shared-id", tenant="globex") is not None
    assert engine.tenants() == ["acme", "globex"]
    assert assert_consistent(engine, "acme") == 0
    assert assert_consistent(engine, "globex") == 1
    for key in engine.storage.keys("t:"):
        assert key.startswith(("t:{acme}:", "t:{globex}:"))


def test_stats_reports_spirals_and_consistency(engine: SpiralMemory) -> None:
    engine.store("x", depth="deep")
    stats = engine.stats().to_json()
    assert stats["total_memories"] == 1
    assert stats["consistent"] is True
    assert stats["spirals"][0]["type"] == "golden"
    assert set(stats["spirals"][0]) == {"id", "type", "node_count", "average_depth",
                                        "current_radius", "total_turns"}


def test_sigil_secret_is_kept_for_the_next_process(storage: Any) -> None:
    first = SpiralMemory(storage, LocalCoordinator(storage))
    second = SpiralMemory(storage, LocalCoordinator(storage))
    signed = first.context.sigils.current().sign("t", "m", 1.0)
    assert second.context.sigils.current().sign("t", "m", 1.0) == signed
    configured = SpiralMemory(storage, LocalCoordinator(storage), sigil_secret="other")
    assert configured.context.sigils.current().sign("t", "m", 1.0) != signed


def test_a_collected_id_stays_collected(make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine(tombstone_ttl_s=3600)
    engine.store("first life", memory_id="phoenix")
    assert engine.collect("phoenix")
    late = engine.store("redelivered", memory_id="phoenix")
    assert not late.created
    assert late.memory is None
    assert late.to_json() == {"id": "phoenix", "tenant": "default", "spiral_id": None,
                              "sigil": None, "position": None, "created": False}
    assert engine.retrieve("phoenix") is None
    assert assert_consistent(engine) == 0
    clock.advance(3601)
    engine.gc()  # tombstones past their time are purged
    assert engine.store("new life", memory_id="phoenix").created


def test_every_nth_store_is_flagged_for_gc(make_engine: EngineFactory) -> None:
    engine = make_engine(trigger_interval=10)
    flags = [engine.store(f"m{i}").gc_due for i in range(25)]
    assert [i for i, due in enumerate(flags) if due] == [9, 19]
    assert not engine.store("again", memory_id="x").gc_due


def test_gc_flags_are_exact_under_concurrency(make_engine: EngineFactory) -> None:
    engine = make_engine(trigger_interval=7)
    with ThreadPoolExecutor(max_workers=12) as pool:
        flags = list(pool.map(lambda i: engine.store(f"m{i}").gc_due, range(700)))
    assert sum(flags) == 100


def test_an_error_quotes_little_of_what_it_refuses(engine: SpiralMemory) -> None:
    """Error messages go into result backends and logs: never megabytes of them."""
    missing = [f"missing-{n}" for n in range(1000)]
    with pytest.raises(InvalidArgument) as caught:
        engine.store("x", associations=missing)
    assert "missing-0" in str(caught.value)
    assert "and 995 more" in str(caught.value)
    assert len(str(caught.value)) < 300
    with pytest.raises(InvalidArgument) as caught:
        engine.store("x", type="bad type " * 100_000)
    assert len(str(caught.value)) < 300


def test_a_rebuild_of_a_tenant_never_used_corrects_nothing_and_writes_nothing(
        engine: SpiralMemory) -> None:
    engine.store("elsewhere", tenant="used")
    before = {key: engine.storage.get(key) for key in engine.storage.keys("")}
    report = engine.rebuild_stats("never-used")
    assert report.clean
    assert report.to_json()["corrected_counters"] == []
    assert {key: engine.storage.get(key) for key in engine.storage.keys("")} == before
    assert engine.tenants() == ["used"]
