"""Store batches: what one combined batch sees of its own stores and evictions.

Requests pile up behind a held lock so they are served as one batch, in order: the
way concurrent stores (or a producer's resends) meet inside one worker process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from spiral_tasks.engine import SpiralMemory
from spiral_tasks.keys import TenantKeys
from spiral_tasks.results import StoreResult
from spiral_tasks.testing.waiting import wait_until
from tests.conftest import Clock, EngineFactory
from tests.invariants import assert_consistent


@contextmanager
def one_batch(engine: SpiralMemory) -> Iterator[Callable[..., Future[StoreResult]]]:
    """Yields `submit(content, **store_kwargs)`; everything submitted inside the block
    is served as one batch, in submission order, when the block ends."""
    held, release = threading.Event(), threading.Event()
    stores = engine.store_combiner

    def hold() -> None:
        with engine.coordinator.critical("default"):
            held.set()
            release.wait(30)

    with ThreadPoolExecutor(max_workers=40) as pool:
        holder = pool.submit(hold)
        assert held.wait(30)
        opener = pool.submit(engine.store, "opens the way", depth="core")
        wait_until(lambda: stores.leading("default"), 30, message="a leader holding a batch")
        submitted: list[Future[StoreResult]] = []

        def submit(content: str, **kwargs: Any) -> Future[StoreResult]:
            submitted.append(pool.submit(engine.store, content, **kwargs))
            count = len(submitted)
            wait_until(lambda: stores.waiting("default") == count, 30,
                       message=f"{count} stores queued")
            return submitted[-1]

        yield submit
        release.set()
        holder.result(30)
        assert opener.result(30).created


def test_a_resend_after_the_tenant_filled_up_in_the_same_batch_is_not_counted_twice(
        make_engine: EngineFactory, clock: Clock) -> None:
    """`L, X, Y, X` in one batch, the tenant full after X: Y's store commits what is
    staged and evicts to make room; the second X must find the first."""
    engine = make_engine(max_memory_nodes=5)
    for i in range(2):
        engine.store(f"weak {i}", depth="surface")
    clock.advance(60)
    with one_batch(engine) as submit:
        lead = submit("L", depth="deep", memory_id="L")
        first = submit("X", depth="deep", memory_id="X")
        other = submit("Y", depth="deep", memory_id="Y")
        again = submit("X again", depth="deep", memory_id="X")
    assert [f.result(30).created for f in (lead, first, other)] == [True] * 3
    assert again.result(30).created is False
    assert again.result(30).stored == first.result(30).stored
    assert assert_consistent(engine) == 5


def test_an_id_evicted_earlier_in_the_batch_stays_collected(
        make_engine: EngineFactory, clock: Clock) -> None:
    """E is stored, then evicted by F's store (E is the only collectable memory), then
    E's resend arrives in the same batch: it finds E's tombstone, not a free id."""
    engine = make_engine(max_memory_nodes=3)
    with one_batch(engine) as submit:
        submit("protected", depth="core")
        evicted = submit("E", depth="surface", memory_id="E")
        submit("F", depth="deep", memory_id="F")
        resent = submit("E again", depth="surface", memory_id="E")
    assert evicted.result(30).created
    assert resent.result(30).created is False
    assert resent.result(30).memory is None  # collected: its tombstone answers
    keys = TenantKeys("default")
    assert engine.storage.get(keys.memory("E")) is None
    assert engine.storage.get(keys.tombstone("E")) is not None
    assert assert_consistent(engine) == 3


def test_a_batch_that_fills_the_tenant_answers_every_request_once(
        make_engine: EngineFactory, clock: Clock) -> None:
    """Many resends of a few ids, in one batch, across the capacity edge."""
    engine = make_engine(max_memory_nodes=4)
    engine.store("old", depth="surface")
    clock.advance(60)
    ids = ["a", "b", "c", "d", "e"]
    with one_batch(engine) as submit:
        futures = [submit(f"{m} #{n}", depth="shallow", memory_id=m)
                   for n in range(3) for m in ids]
    created = [f.result(30).id for f in futures if f.result(30).created]
    assert sorted(created) == sorted(set(created))  # no id created twice
    assert assert_consistent(engine) == 4
    assert engine.rebuild_stats().clean


@pytest.mark.parametrize("time", [float("nan"), float("inf")])
def test_a_store_at_a_time_no_record_can_hold_is_refused_with_nothing_written(
        make_engine: EngineFactory, clock: Clock, time: float) -> None:
    """Its record is written without a JSON round trip (built here from checked fields),
    so what the round trip would have refused is refused where the record is built."""
    engine = make_engine()
    engine.store("before")
    clock.now = time
    with pytest.raises(ValueError, match="no time"):
        engine.store("at no time")
    clock.now = 2_000_000.0
    assert engine.stats().total_memories == 1
    assert_consistent(engine)
