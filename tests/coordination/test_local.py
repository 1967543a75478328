from __future__ import annotations

import threading

import pytest

from spiral_tasks.config import Settings
from spiral_tasks.coordination.local import LocalCoordinator
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import LockTimeout
from spiral_tasks.factory import open_coordinator
from spiral_tasks.storage.base import Put
from spiral_tasks.storage.memory import MemoryStorage
from tests.invariants import assert_consistent


def hold(coordinator: LocalCoordinator, tenant: str, entered: threading.Event,
         release: threading.Event) -> threading.Thread:
    def run() -> None:
        with coordinator.critical(tenant):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    assert entered.wait(5)
    return thread


def test_a_stuck_section_raises_instead_of_hanging() -> None:
    storage = MemoryStorage()
    coordinator = LocalCoordinator(storage, timeout_s=0.2)
    engine = SpiralMemory(storage, coordinator)
    entered, release = threading.Event(), threading.Event()
    holder = hold(coordinator, "default", entered, release)
    keys_before = storage.keys("")
    with pytest.raises(LockTimeout, match="'default' stayed locked"):
        engine.store("blocked")
    assert storage.keys("") == keys_before
    release.set()
    holder.join()
    assert engine.store("free again").created


def test_tenants_lock_independently() -> None:
    storage = MemoryStorage()
    coordinator = LocalCoordinator(storage, timeout_s=0.2)
    entered, release = threading.Event(), threading.Event()
    holder = hold(coordinator, "busy", entered, release)
    with coordinator.critical("idle", timeout_s=0) as fence:  # no wait: "busy" is held
        fence.commit([Put("t:{idle}:x", 1)])
    assert storage.get("t:{idle}:x") == 1
    with pytest.raises(LockTimeout), coordinator.critical("busy", timeout_s=0):
        pass
    release.set()
    holder.join()


def test_the_default_wait_is_the_runbooks_two_seconds() -> None:
    storage = MemoryStorage()
    coordinator = open_coordinator(storage, Settings.from_env({}).locks)
    entered, release = threading.Event(), threading.Event()
    holder = hold(coordinator, "t", entered, release)  # type: ignore[arg-type]
    try:
        with pytest.raises(LockTimeout, match=r"stayed locked for 2\.000 s"), \
                coordinator.critical("t"):
            pass
    finally:
        release.set()
        holder.join()


def test_coordinators_over_one_store_share_its_locks() -> None:
    """Two engines over one storage object serialize like two threads of one engine:
    the lock is the store's, not the coordinator's."""
    storage = MemoryStorage()
    first = LocalCoordinator(storage, timeout_s=0)
    second = LocalCoordinator(storage, timeout_s=0)
    with first.critical("t"), pytest.raises(LockTimeout), second.critical("t"):
        pass
    with second.critical("t") as fence:
        fence.commit([Put("t:{t}:x", 1)])
    assert storage.get("t:{t}:x") == 1


def test_engines_over_one_store_keep_the_invariant_storing_at_once() -> None:
    storage = MemoryStorage()
    engines = [SpiralMemory(storage, LocalCoordinator(storage)) for _ in range(2)]
    threads = [threading.Thread(target=lambda e=e: [e.store(f"m{i}") for i in range(300)])
               for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert assert_consistent(engines[0]) == 600
