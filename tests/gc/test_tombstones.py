"""Expired tombstones are forgotten by GC, which looks for them only once one may be
due (`spiral_tasks/gc/tombstones.py`)."""

from __future__ import annotations

from spiral_tasks.testing.engines import engine_over
from tests.conftest import Clock, EngineFactory
from tests.invariants import assert_consistent

TTL = 3600.0


def test_each_tombstone_goes_at_its_time_and_the_queue_is_read_only_then(
        make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine(tombstone_ttl_s=TTL)
    times = engine.gc_purges
    engine.store("first", memory_id="a")
    assert engine.collect("a")  # its tombstone's time: now + TTL
    engine.gc()
    assert not times.due("default", clock())
    clock.advance(600)
    engine.store("second", memory_id="b")
    assert engine.collect("b")  # 600 s after a's
    clock.advance(TTL - 600)
    assert times.due("default", clock())
    engine.gc()  # a's time has come, not b's
    assert engine.store("a again", memory_id="a").created
    assert not engine.store("b again", memory_id="b").created
    assert not times.due("default", clock())  # until b's time
    clock.advance(600)
    assert times.due("default", clock())
    engine.gc()
    assert engine.store("b again", memory_id="b").created
    assert assert_consistent(engine) == 2


def test_an_empty_queue_is_looked_at_again_a_ttl_later(make_engine: EngineFactory,
                                                       clock: Clock) -> None:
    """No tombstone written after a look can be due before the look's time plus the
    TTL."""
    engine = make_engine(tombstone_ttl_s=TTL)
    engine.store("kept")
    engine.gc()
    clock.advance(TTL - 1)
    assert not engine.gc_purges.due("default", clock())
    clock.advance(1)
    assert engine.gc_purges.due("default", clock())


def test_a_shorter_ttl_elsewhere_is_honoured_late_never_early(
        make_engine: EngineFactory, clock: Clock) -> None:
    """Another engine (another process's configuration) with a shorter TTL writes a
    tombstone due before this engine looks again: it stays until then, so its id is
    kept out longer, never let back in before its time."""
    engine = make_engine(tombstone_ttl_s=TTL)
    engine.store("kept", depth="core")  # never collected
    engine.gc()  # nothing due before now + TTL, as far as `engine` knows
    hasty = engine_over(engine.storage, clock=clock, tombstone_ttl_s=60)
    hasty.store("short-lived", memory_id="s")
    assert hasty.collect("s")
    clock.advance(120)
    engine.gc()
    assert not engine.store("back too soon?", memory_id="s").created
    clock.advance(TTL)
    engine.gc()
    assert engine.store("back in its time", memory_id="s").created
    assert assert_consistent(engine) == 2
