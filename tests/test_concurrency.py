"""Many threads at once on one engine: the invariant must hold exactly."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from spiral_tasks.engine import SpiralMemory
from tests.conftest import Clock
from tests.invariants import assert_consistent


def test_1000_concurrent_stores(engine: SpiralMemory) -> None:
    depths = ["surface", "shallow", "deep", "core", "transcendent"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: engine.store(f"m{i}", depth=depths[i % 5]),
                                range(1000)))
    assert len({r.stored.id for r in results}) == 1000
    slots = {(r.stored.spiral_id, r.stored.position.index) for r in results}
    assert len(slots) == 1000  # no two memories share a slot
    assert assert_consistent(engine) == 1000
    assert engine.rebuild_stats().clean


def test_concurrent_stores_collects_gc_and_retrieves(engine: SpiralMemory,
                                                     clock: Clock) -> None:
    seeded = [engine.store(f"seed{i}", depth="surface").stored.id for i in range(300)]
    clock.advance(3600)
    rng = random.Random(7)
    victims = rng.sample(seeded, 100)

    def work(i: int) -> None:
        match i % 4:
            case 0:
                engine.store(f"new{i}", depth="deep", tenant=rng.choice(["default", "t2"]))
            case 1:
                engine.collect(victims[i // 4 % len(victims)])
            case 2:
                engine.gc(time_budget_ms=2)
            case _:
                engine.retrieve(seeded[i % len(seeded)])

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(work, range(800)))
    assert_consistent(engine, "default")
    assert_consistent(engine, "t2")
    assert engine.rebuild_stats().clean
