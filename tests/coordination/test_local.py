from __future__ import annotations

import threading

import pytest

from spiral_tasks.coordination.local import LocalCoordinator
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import LockTimeout
from spiral_tasks.storage.memory import MemoryStorage


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
    with coordinator.critical("idle") as fence:
        fence.commit([])
    release.set()
    holder.join()


def test_the_default_timeout_is_two_seconds() -> None:
    coordinator = LocalCoordinator(MemoryStorage())
    assert coordinator._timeout_s == 2.0
