"""Sections: read-your-writes, the cache kept only on success, rebuilds alongside."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import LockLost
from spiral_tasks.keys import TenantKeys
from spiral_tasks.section import Section, StateUse
from spiral_tasks.storage.base import Delete, Increment, IndexPut, Put
from spiral_tasks.storage.level import LevelStorage
from spiral_tasks.testing.engines import engine_over
from tests.invariants import assert_consistent


def test_reads_see_the_sections_own_writes_staged_and_committed(
        engine: SpiralMemory) -> None:
    keys = TenantKeys("default")
    engine.storage.apply([Put(keys.memory("old"), {"v": 1})])
    with engine.sections.enter("default", read=[keys.memory("old")]) as section:
        assert section.get(keys.memory("old")) == {"v": 1}
        section.stage(Delete(keys.memory("old")), Put(keys.memory("new"), {"v": 2}))
        assert section.get(keys.memory("old")) is None
        assert section.get(keys.memory("new")) == {"v": 2}
        section.commit()
        assert section.get_many([keys.memory("old"), keys.memory("new")]) == [None, {"v": 2}]
        section.stage(Increment(keys.memory_count, 3))
        section.commit(final=True)
        assert section.get(keys.memory_count) == 3  # read afresh after an increment
    assert engine.storage.get(keys.memory("new")) == {"v": 2}


def test_an_index_is_not_read_with_writes_pending(engine: SpiralMemory) -> None:
    keys = TenantKeys("default")
    with engine.sections.enter("default") as section:
        section.stage(IndexPut(keys.gc_queue, "m", 1.0))
        with pytest.raises(RuntimeError, match="commit them first"):
            section.index_range(keys.gc_queue)
        section.commit(final=True)
        assert section.index_range(keys.gc_queue) == [("m", 1.0)]


def test_a_failed_commit_leaves_the_cached_state_as_it_was(engine: SpiralMemory) -> None:
    engine.store("one")
    cached = engine.sections.cache.get("default")
    assert cached is not None
    assert cached.memory_count == 1

    class Refused(Exception):
        pass

    def change_then_fail() -> None:
        with engine.sections.enter("default", state=StateUse.LOAD) as section:
            section.state.memory_count += 100
            section.put_spiral(next(iter(section.state.spirals.values())))
            raise Refused

    with pytest.raises(Refused):
        change_then_fail()
    assert engine.sections.cache.get("default") == cached
    assert engine.store("two").created
    assert assert_consistent(engine) == 2


def test_a_rebuild_alongside_never_breaks_a_store(engine: SpiralMemory) -> None:
    """A rebuild (which writes nothing on a clean tenant) runs again and again while
    other threads store, collect and retrieve: every operation must succeed."""
    engine.store("seed")
    stop = threading.Event()
    rebuilds = 0

    def rebuild_forever() -> None:
        nonlocal rebuilds
        while not stop.is_set():
            assert engine.rebuild_stats("default").clean
            rebuilds += 1

    def work(i: int) -> None:
        stored = engine.store(f"m{i}", depth=["surface", "deep"][i % 2])
        engine.retrieve(stored.stored.id)
        if i % 5 == 0:
            engine.collect(stored.stored.id)

    rebuilder = threading.Thread(target=rebuild_forever)
    rebuilder.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(work, range(400)))
    finally:
        stop.set()
        rebuilder.join(30)
    assert rebuilds > 0
    assert assert_consistent(engine) == 1 + 400 - 80


def test_a_section_that_lost_its_lock_cannot_commit(engine: SpiralMemory) -> None:
    """Whatever the coordinator, a final commit ends the section's right to write."""
    keys = TenantKeys("default")
    with engine.sections.enter("default") as section:
        section.stage(Put(keys.memory("a"), 1))
        section.commit(final=True)
        if engine.storage.name == "redis":
            section.stage(Put(keys.memory("b"), 2))
            with pytest.raises(LockLost):
                section.commit()
    assert isinstance(section, Section)
    assert engine.storage.get(keys.memory("b")) is None


def test_resends_to_a_store_reopened_by_a_new_process(tmp_path: Path) -> None:
    """A restarted worker (no generation known yet) answers resends from the records,
    committing nothing: its cache must not be trusted at the empty generation, nor
    break the next section."""
    with LevelStorage(tmp_path / "db") as storage:
        engine_over(storage).store("first", memory_id="x")
    with LevelStorage(tmp_path / "db") as reopened:
        engine = engine_over(reopened)
        for _ in range(3):
            assert engine.store("again", memory_id="x").created is False
        assert engine.store("new").created
        assert assert_consistent(engine) == 2
