"""rebuild_stats reads storage and repairs what differs, on every backend."""

from __future__ import annotations

from typing import Any

from spiral_tasks.engine import SpiralMemory
from spiral_tasks.keys import TenantKeys
from spiral_tasks.model import SpiralType
from spiral_tasks.rebuild import Paced
from spiral_tasks.security.sigils import index_name, index_names
from spiral_tasks.storage.base import Delete, IndexPut, IndexRemove, Put
from tests.conftest import EngineFactory
from tests.invariants import assert_consistent

KEYS = TenantKeys("default")


def populate(engine: SpiralMemory, count: int = 40) -> list[str]:
    depths = ["surface", "shallow", "deep", "core"]
    return [engine.store(f"m{i}", depth=depths[i % 4]).stored.id for i in range(count)]


def test_a_clean_store_reports_no_corrections(engine: SpiralMemory) -> None:
    populate(engine)
    report = engine.rebuild_stats()
    assert report.clean
    data = report.to_json()
    assert data["corrected_spirals"] == []
    assert data["corrected_counters"] == []
    assert len(data["unchanged_spirals"]) == 4
    assert data["total_nodes"] == 40
    assert data["duration_ms"] >= 0


def test_corrupted_counters_are_repaired(engine: SpiralMemory) -> None:
    populate(engine)
    spiral = engine.stats().spirals[0]
    engine.storage.apply([Put(KEYS.spiral_count(spiral.id), 999),
                          Put(KEYS.memory_count, 3)])
    report = engine.rebuild_stats()
    fixed = {c.key: (c.before, c.after) for c in report.corrected_counters}
    assert fixed == {KEYS.spiral_count(spiral.id): (999, spiral.node_count),
                     KEYS.memory_count: (3, 40)}
    assert engine.rebuild_stats().clean
    assert assert_consistent(engine) == 40


def test_corrupted_spiral_statistics_are_repaired(make_engine: EngineFactory) -> None:
    engine = make_engine()
    populate(engine)
    spiral = engine.stats().spirals[0]
    record = engine.storage.get(KEYS.spiral(spiral.id))
    truth = dict(record)
    record.update(node_count=995, average_depth=0.123, current_radius=1234.5,
                  total_turns=77, holes=[0, 2])
    engine.storage.set(KEYS.spiral(spiral.id), record)
    fresh = make_engine()  # another process's view: nothing cached
    report = fresh.rebuild_stats()
    assert [c.spiral_id for c in report.corrected_spirals] == [spiral.id]
    correction = report.to_json()["corrected_spirals"][0]
    assert correction["before"] == {"node_count": 995, "average_depth": 0.123,
                                    "current_radius": 1234.5, "total_turns": 77}
    assert correction["after"]["node_count"] == truth["node_count"]
    assert correction["after"]["current_radius"] == truth["current_radius"]
    assert correction["deltas"]["node_count"] == truth["node_count"] - 995
    repaired = engine.storage.get(KEYS.spiral(spiral.id))
    assert {k: repaired[k] for k in ("node_count", "holes", "depth_tenths")} == \
        {k: truth[k] for k in ("node_count", "holes", "depth_tenths")}
    assert fresh.rebuild_stats().clean
    fresh.store("after repair")
    assert assert_consistent(fresh) == 41


def test_orphans_are_adopted_or_removed(engine: SpiralMemory) -> None:
    populate(engine)
    golden = next(s for s in engine.stats().spirals if s.type is SpiralType.GOLDEN)
    engine.storage.apply([
        Delete(KEYS.spiral(golden.id)),           # nodes lose their spiral
        Put(KEYS.spiral_count("spiral_gone"), 4),  # a counter of nothing
        Put(KEYS.sigil("f" * 32), "no-such-memory"),
        IndexPut(KEYS.gc_queue, "no-such-memory", 1.0),
    ])
    report = engine.rebuild_stats()
    assert report.orphans.nodes == [golden.id]
    assert report.orphans.counters == [KEYS.spiral_count("spiral_gone")]
    assert report.orphans.sigils == ["f" * 32]
    assert report.orphans.queue_entries == ["no-such-memory"]
    adopted = engine.storage.get(KEYS.spiral(golden.id))
    assert adopted["type"] == "golden"  # inferred from the nodes' radii
    assert adopted["node_count"] == golden.node_count
    assert engine.storage.get(KEYS.spiral_count("spiral_gone")) is None
    assert engine.rebuild_stats().clean
    assert assert_consistent(engine) == 40


def test_missing_sigils_and_queue_entries_are_restored(engine: SpiralMemory) -> None:
    result = engine.store("x", depth="surface")
    engine.storage.apply([Delete(KEYS.sigil(index_name(result.stored.sigil))),
                          IndexRemove(KEYS.gc_queue, result.stored.id)])
    report = engine.rebuild_stats()
    assert (report.sigil_fixes, report.queue_fixes) == (1, 1)
    assert engine.storage.get(KEYS.sigil(index_name(result.stored.sigil))) == result.stored.id
    assert [m for m, _ in engine.storage.index_range(KEYS.gc_queue)] == [result.stored.id]


def test_two_nodes_in_one_slot_are_separated(engine: SpiralMemory) -> None:
    a = engine.store("a").stored
    b = engine.store("b").stored
    record: dict[str, Any] = engine.storage.get(KEYS.memory(b.id))
    record["position"] = dict(engine.storage.get(KEYS.memory(a.id))["position"])
    engine.storage.set(KEYS.memory(b.id), record)
    report = engine.rebuild_stats()
    assert len(report.orphans.reslotted_nodes) == 1
    slots = {engine.storage.get(KEYS.memory(m))["position"]["index"] for m in (a.id, b.id)}
    assert slots == {0, 1}
    assert engine.rebuild_stats().clean
    assert assert_consistent(engine) == 2


def test_rebuild_of_every_tenant_sums_up(engine: SpiralMemory) -> None:
    for tenant in ["a", "b"]:
        for i in range(5):
            engine.store(f"{tenant}{i}", tenant=tenant)
    engine.storage.set(TenantKeys("b").memory_count, 0)
    report = engine.rebuild_stats()
    assert report.total_nodes == 10
    assert [c.key for c in report.corrected_counters] == [TenantKeys("b").memory_count]
    assert engine.rebuild_stats(tenant="a").total_nodes == 5


def test_a_dry_run_reports_the_corrections_and_writes_nothing(engine: SpiralMemory) -> None:
    first = populate(engine)[0]
    engine.storage.set(KEYS.memory_count, 3)
    engine.storage.delete(KEYS.sigil(index_name(engine.storage.get(KEYS.memory(first))["sigil"])))
    before = {k: engine.storage.get(k) for k in engine.storage.keys(KEYS.namespace)}
    done: list[str] = []
    report = engine.rebuild_stats(dry_run=True, on_tenant=done.append)
    assert [c.key for c in report.corrected_counters] == [KEYS.memory_count]
    assert report.sigil_fixes == 1
    assert done == ["default"]
    assert {k: engine.storage.get(k) for k in engine.storage.keys(KEYS.namespace)} == before
    assert engine.rebuild_stats().to_json()["corrected_counters"] == \
        report.to_json()["corrected_counters"]  # the real run does what was shown
    assert engine.rebuild_stats(dry_run=True).clean


def test_index_names_names_each_sigil_as_index_name_does() -> None:
    """The rebuild names every memory's entry with `index_names`; an entry named
    otherwise would be called an orphan and rewritten."""
    sigils = ["0" * 40, "f" * 40, "0123456789abcdef" * 2 + "01234567"]
    assert index_names(sigils) == [index_name(s) for s in sigils]


def test_a_paced_heartbeat_extends_only_once_its_interval_has_passed() -> None:
    extended: list[None] = []
    rarely = Paced(lambda: extended.append(None), 3600)
    always = Paced(lambda: extended.append(None), 0.0)
    rarely()
    assert extended == []
    always()
    always()
    assert len(extended) == 2
