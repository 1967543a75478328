"""A holder that lets a tenant's lock go between two holds (a GC run) lets the threads
of its process that were waiting for it take it first, whatever their wake-up costs:
a fixed 1 ms away from the lock was shorter than a loaded machine takes to run a woken
thread, and the run took the lock again before the store waiting for it."""

from __future__ import annotations

import threading
import time

import pytest

from spiral_tasks.coordination.base import Fence
from spiral_tasks.coordination.redis import RedisCoordinator
from spiral_tasks.errors import LockTimeout
from spiral_tasks.factory import open_coordinator
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.memory import MemoryStorage
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.testing.waiting import wait_until

#: Far beyond any wake-up: the waiter has taken the lock long before.
LONG_S = 30.0


def test_a_holder_letting_go_waits_until_the_waiting_thread_has_the_lock(
        storage: Storage) -> None:
    coordinator = open_coordinator(storage)
    waiters = coordinator.waiters  # type: ignore[attr-defined]
    entered, leave = threading.Event(), threading.Event()

    def store() -> None:
        with coordinator.critical("t", timeout_s=LONG_S):
            entered.set()
            leave.wait(LONG_S)

    with coordinator.critical("t"):
        thread = threading.Thread(target=store)
        thread.start()
        wait_until(lambda: waiters.count("t") == 1, LONG_S,
                   message="the thread to wait for the lock")
    # Every waiter is in this process for a local lock; another process's may poll a
    # Redis lock unseen.
    knows_all = coordinator.let_waiters_in("t", time.perf_counter() + LONG_S)
    assert knows_all == (storage.name != "redis")
    try:
        assert waiters.count("t") == 0
        # The waiter holds it now: taking it again finds it taken.
        with pytest.raises(LockTimeout), coordinator.critical("t", timeout_s=0):
            pass
    finally:
        leave.set()
        thread.join(LONG_S)
    assert entered.is_set()


def test_letting_in_returns_at_once_when_nobody_waits(storage: Storage) -> None:
    coordinator = open_coordinator(storage)
    with coordinator.critical("t"):
        pass
    # A deadline already passed: a wait would give up, so only "nobody waits" is True.
    assert coordinator.let_waiters_in("t", time.perf_counter() - 1) == (
        storage.name != "redis")


def test_a_redis_fence_dates_its_lock_from_the_request_that_took_it(
        redis_url: str) -> None:
    """A lock that expires lives from when the request that took it reached Redis: a
    holder planning its hold within the lifetime counts from when that request was
    sent (`Fence.taken_at`), not from the reply (a GC run's 20 ms holds of a 40 ms lock
    were lost when the reply came late), nor from the first try of a wait."""
    storage = RedisStorage(redis_url)
    storage.init()
    coordinator = RedisCoordinator(storage)
    before = time.perf_counter()
    with coordinator.critical("t") as fence:
        entered = time.perf_counter()
    assert fence.taken_at is not None
    assert before <= fence.taken_at <= entered
    waited: list[Fence] = []

    def store() -> None:
        with coordinator.critical("t", timeout_s=LONG_S) as fence:
            waited.append(fence)

    with coordinator.critical("t"):
        thread = threading.Thread(target=store)
        thread.start()
        wait_until(lambda: coordinator.waiters.count("t") == 1, LONG_S,
                   message="the thread to wait for the lock")
        released = time.perf_counter()
    thread.join(LONG_S)
    (fence,) = waited
    assert fence.waited
    assert fence.taken_at is not None
    assert fence.taken_at >= released


def test_a_local_lock_does_not_expire_and_has_no_date() -> None:
    with open_coordinator(MemoryStorage()).critical("t") as fence:
        assert fence.taken_at is None
