"""Flat combining: one leader per key serves everyone queued, and nobody is left hanging."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from types import FrameType
from typing import Any

import pytest

from spiral_tasks.combining import Combiner, Pending
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.testing.waiting import wait_until
from tests.invariants import assert_consistent


class FirstBatchHeld:
    """A serve function that records each batch and holds the first one until
    `release` is set, so that the test can queue waiters behind its leader; each
    request is answered `factor` times its payload."""

    def __init__(self, factor: int = 1) -> None:
        self.batches: list[list[int]] = []
        self.first_entered, self.release = threading.Event(), threading.Event()
        self.factor = factor

    def __call__(self, key: str, batch: list[Pending[int, int]]) -> None:
        self.batches.append([p.payload for p in batch])
        if len(self.batches) == 1:
            self.first_entered.set()
            self.release.wait(5)
        for pending in batch:
            pending.finish(pending.payload * self.factor)


def test_waiters_are_served_in_one_batch_by_the_next_leader() -> None:
    serve = FirstBatchHeld(factor=10)
    combiner: Combiner[int, int] = Combiner(serve)
    with ThreadPoolExecutor(max_workers=6) as pool:
        leader = pool.submit(combiner.run, "k", 0)
        assert serve.first_entered.wait(5)
        waiters = [pool.submit(combiner.run, "k", i) for i in range(1, 6)]
        wait_until(lambda: combiner.waiting("k") == 5, 30, message="five queued waiters")
        serve.release.set()
        assert leader.result(5) == 0
        assert [w.result(5) for w in waiters] == [10, 20, 30, 40, 50]
    assert serve.batches == [[0], [1, 2, 3, 4, 5]]
    assert not combiner.leading("k")


def test_a_failing_batch_fails_every_request_in_it() -> None:
    def serve(key: str, batch: list[Pending[int, int]]) -> None:
        raise TimeoutError("lock held elsewhere")

    combiner: Combiner[int, int] = Combiner(serve)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(combiner.run, "k", i) for i in range(20)]
        for future in futures:
            with pytest.raises(TimeoutError, match="lock held elsewhere"):
                future.result(5)
    assert not combiner.leading("k")
    assert combiner.waiting("k") == 0


def test_keys_are_served_independently() -> None:
    served: list[str] = []

    def serve(key: str, batch: list[Pending[str, str]]) -> None:
        served.append(key)
        for pending in batch:
            pending.finish(key + pending.payload)

    combiner: Combiner[str, str] = Combiner(serve)
    assert combiner.run("a", "1") == "a1"
    assert combiner.run("b", "2") == "b2"
    assert served == ["a", "b"]


def test_one_bad_store_fails_alone_among_concurrent_ones(engine: SpiralMemory) -> None:
    anchor = engine.store("anchor").stored.id

    def store(i: int) -> str:
        links = ["missing-id"] if i % 7 == 0 else [anchor]
        try:
            engine.store(f"m{i}", associations=links)
        except InvalidArgument as exc:
            return exc.argument
        return "stored"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(store, range(300)))
    assert outcomes.count("associations") == len(range(0, 300, 7))
    assert assert_consistent(engine) == 1 + outcomes.count("stored")


def test_concurrent_stores_of_one_id_create_it_once(engine: SpiralMemory) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: engine.store(f"try {i}", memory_id="same"),
                                range(64)))
    assert sum(r.created for r in results) == 1
    assert len({r.stored.content for r in results}) == 1
    assert assert_consistent(engine) == 1


def test_a_batch_sees_its_own_earlier_stores(engine: SpiralMemory) -> None:
    """Hold the tenant's lock so requests pile up, then let them through as one batch."""
    held, release = threading.Event(), threading.Event()
    coordinator = engine.coordinator

    def hold() -> None:
        with coordinator.critical("default"):
            held.set()
            release.wait(5)

    with ThreadPoolExecutor(max_workers=5) as pool:
        pool.submit(hold)
        assert held.wait(5)
        leader = pool.submit(engine.store, "leader")  # takes its batch, waits for the lock
        stores = engine.store_combiner
        wait_until(lambda: stores.leading("default"), 30, message="a leader")
        first = pool.submit(engine.store, "first", memory_id="first")
        wait_until(lambda: stores.waiting("default") == 1, 30, message="one waiting store")
        again = pool.submit(engine.store, "dup", memory_id="first")
        linked = pool.submit(engine.store, "linked", associations=["first"])
        wait_until(lambda: stores.waiting("default") == 3, 30, message="three waiting stores")
        release.set()
        assert leader.result(5).created
        assert first.result(5).created
        assert not again.result(5).created
        assert linked.result(5).stored.associations == ("first",)
    assert assert_consistent(engine) == 3


def test_a_request_served_on_a_stand_in_answers_as_it_was_answered() -> None:
    served, refused = Pending[int, int](1), Pending[int, int](2)
    stand_ins = [Pending[int, int](1), Pending[int, int](2)]
    stand_ins[0].finish(10)
    stand_ins[1].fail(InvalidArgument("payload", "refused"))
    served.adopt(stand_ins[0])
    refused.adopt(stand_ins[1])
    assert served.outcome() == 10
    with pytest.raises(InvalidArgument, match="refused"):
        refused.outcome()


def test_batches_are_bounded_and_served_oldest_first() -> None:
    serve = FirstBatchHeld()
    combiner: Combiner[int, int] = Combiner(serve, max_batch=3)
    with ThreadPoolExecutor(max_workers=8) as pool:
        leader = pool.submit(combiner.run, "k", 0)
        assert serve.first_entered.wait(5)
        waiters = []
        for i in range(1, 8):  # queued one by one, so their order is known
            waiters.append(pool.submit(combiner.run, "k", i))
            wait_until(lambda i=i: combiner.waiting("k") == i, 30, message=f"{i} queued")
        serve.release.set()
        assert leader.result(5) == 0
        assert [w.result(5) for w in waiters] == list(range(1, 8))
    assert serve.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
    assert not combiner.leading("k")


class Waking:
    """Follows one caller's thread through its waits with a trace function
    (`sys.settrace`, which is not traced itself): `woke` once its turn's `Event.wait`
    returns (answered, or handed the lead), `parked` at a `Condition.wait` of its own,
    not its turn's (a leader waiting before it cuts its batch). With `hold`, the thread
    stops right after waking, before the combiner can learn that it woke, until
    `release`: a caller answered but not yet scheduled again, made to last as long as
    the test needs."""

    def __init__(self, hold: bool = False) -> None:
        self.woke, self.parked, self.release = (threading.Event(), threading.Event(),
                                                threading.Event())
        self.hold = hold

    def run(self, combiner: Combiner[int, int], key: str, payload: int) -> int:
        sys.settrace(self._calls)
        try:
            return combiner.run(key, payload)
        finally:
            sys.settrace(None)

    def _calls(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code is threading.Event.wait.__code__ and not self.woke.is_set():
            return self._returns
        if (frame.f_code is threading.Condition.wait.__code__ and frame.f_back is not None
                and frame.f_back.f_code is not threading.Event.wait.__code__):
            self.parked.set()
        return None

    def _returns(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "return":
            self.woke.set()
            if self.hold:  # bounded only so that a failing test cannot hang the pool
                self.release.wait(60)
        return self._returns


class HeldAtCut(FirstBatchHeld):
    """`FirstBatchHeld`, noting at each batch whether the request `payload` of caller
    `answered` had been answered before and its caller was still held then (not
    released: it cannot have taken its answer)."""

    def __init__(self, answered: Waking, payload: int) -> None:
        super().__init__()
        self.answered, self.payload = answered, payload
        self.held_at_cut: list[bool] = []

    def __call__(self, key: str, batch: list[Pending[int, int]]) -> None:
        self.held_at_cut.append(
            any(self.payload in b for b in self.batches) and not self.answered.release.is_set())
        super().__call__(key, batch)


def queue_one_by_one(pool: ThreadPoolExecutor, combiner: Combiner[int, int],
                     callers: list[Waking], first: int) -> list[Future[int]]:
    """`callers` queued in this order, payloads counting from `first`."""
    futures = []
    for i, caller in enumerate(callers, first):
        futures.append(pool.submit(caller.run, combiner, "k", i))
        wait_until(lambda i=i: combiner.waiting("k") == i - first + 1, 30,
                   message=f"{i} queued")
    return futures


def assert_served_unheld(combiner: Combiner[int, int], serve: HeldAtCut, answered: Waking,
                         leader: Future[int], waiters: list[Future[int]]) -> None:
    """Release the held caller; then every store was answered, in the batches expected,
    and no batch was cut while an answered caller was still held."""
    answered.release.set()
    assert leader.result(5) == 0
    assert [w.result(5) for w in waiters] == [1, 2, 3]
    assert serve.batches == [[0], [1, 2], [3]]
    assert serve.held_at_cut == [False, False, False]
    assert not combiner.leading("k")


def test_a_leader_handed_the_lead_waits_for_the_callers_answered_before() -> None:
    """On a backend that never releases the GIL in a batch, the callers a batch answered
    could stay unscheduled while the next leader served batch after batch: their
    stores ended late and their next ones queued late (the memory backend's tail).
    Here one answered caller is held between waking and taking its answer; the leader
    after it must wait for it before cutting its own batch."""
    answered, leader_next = Waking(hold=True), Waking()
    serve = HeldAtCut(answered, 2)
    combiner: Combiner[int, int] = Combiner(serve, max_batch=2, claim_wait_s=60)
    with ThreadPoolExecutor(max_workers=4) as pool:
        leader = pool.submit(combiner.run, "k", 0)
        assert serve.first_entered.wait(5)
        # 1 leads the batch [1, 2], which answers 2; then 3 leads.
        waiters = queue_one_by_one(pool, combiner, [Waking(), answered, leader_next], 1)
        serve.release.set()
        wait_until(lambda: leader_next.parked.is_set() or len(serve.batches) == 3, 30,
                   message="3, handed the lead, waiting or serving")
        assert_served_unheld(combiner, serve, answered, leader, waiters)


def test_a_caller_leading_afresh_waits_for_the_callers_answered_before() -> None:
    """The same when the last batch left nobody queued: whoever stores next leads
    without being handed the lead (in a closed loop, often that batch's own leader,
    which would otherwise serve itself alone, batch after batch, holding the GIL)."""
    answered, fresh = Waking(hold=True), Waking()
    serve = HeldAtCut(answered, 2)
    combiner: Combiner[int, int] = Combiner(serve, claim_wait_s=60)
    with ThreadPoolExecutor(max_workers=4) as pool:
        leader = pool.submit(combiner.run, "k", 0)
        assert serve.first_entered.wait(5)
        # 1 leads the batch [1, 2], which answers 2 and leaves nobody queued.
        waiters = queue_one_by_one(pool, combiner, [Waking(), answered], 1)
        serve.release.set()
        assert waiters[0].result(5) == 1
        wait_until(answered.woke.is_set, 30, message="2 answered")
        assert not combiner.leading("k")
        waiters.append(pool.submit(fresh.run, combiner, "k", 3))
        wait_until(lambda: fresh.parked.is_set() or len(serve.batches) == 3, 30,
                   message="3, leading, waiting or serving")
        assert_served_unheld(combiner, serve, answered, leader, waiters)
