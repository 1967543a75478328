"""The engine reports what it does to its observer: the seam metrics are built on."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from spiral_tasks.coordination.redis import RedisCoordinator
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import LockLost, LockTimeout
from spiral_tasks.factory import open_coordinator
from spiral_tasks.gc.policy import GcReport
from spiral_tasks.keys import TenantKeys
from spiral_tasks.observe import Observer
from spiral_tasks.rebuild import RebuildReport
from spiral_tasks.storage.base import Put, Storage
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.testing.waiting import wait_until


class Recorder(Observer):
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.last: dict[str, Any] = {}

    def _note(self, name: str, *args: Any) -> None:
        self.calls[name] += 1
        self.last[name] = args

    def lock_acquired(self, tenant: str, waited_s: float) -> None:
        self._note("lock_acquired", tenant, waited_s)

    def lock_timed_out(self, tenant: str, waited_s: float) -> None:
        self._note("lock_timed_out", tenant, waited_s)

    def lock_lost(self, tenant: str) -> None:
        self._note("lock_lost", tenant)

    def operation(self, name: str, tenant: str, seconds: float, ok: bool) -> None:
        self._note(f"operation:{name}:{'ok' if ok else 'failed'}", tenant, seconds)

    def tenant_counts(self, tenant: str, memories: int, spirals: int) -> None:
        self._note("tenant_counts", tenant, memories, spirals)

    def gc_ran(self, report: GcReport) -> None:
        self._note("gc_ran", report)

    def rebuilt(self, report: RebuildReport) -> None:
        self._note("rebuilt", report)

    def invariant(self, tenant: str, holds: bool) -> None:
        self._note("invariant", tenant, holds)


def observed(storage: Storage, **overrides: Any) -> tuple[SpiralMemory, Recorder]:
    recorder = Recorder()
    engine = SpiralMemory(storage, open_coordinator(storage), sigil_secret="s",
                          observer=recorder, **overrides)
    return engine, recorder


def test_operations_locks_and_counts_are_reported(storage: Storage) -> None:
    engine, seen = observed(storage)
    stored = [engine.store(f"m{i}", depth="surface").stored.id for i in range(3)]
    engine.retrieve(stored[0])
    engine.collect(stored[1])
    with pytest.raises(Exception, match="content"):
        engine.store(7)  # type: ignore[arg-type]  # refused before any section
    engine.gc(tenant="default")
    engine.rebuild_stats("default")
    engine.stats("default")
    assert seen.calls["operation:store:ok"] == 3
    assert seen.calls["operation:retrieve:ok"] == 1
    assert seen.calls["operation:collect:ok"] == 1
    assert seen.calls["lock_acquired"] >= 6
    assert seen.last["tenant_counts"][1:] == (2, 1)
    assert seen.calls["gc_ran"] == 1
    assert seen.calls["rebuilt"] == 1
    assert seen.last["invariant"] == ("default", True)


def test_a_lock_timeout_is_reported(storage: Storage) -> None:
    engine, seen = observed(storage)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.coordinator.critical("default"):
            held.set()
            release.wait(30)

    def enter_without_waiting() -> None:
        with engine.sections.enter("default", timeout_s=0):
            pass

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        with pytest.raises(LockTimeout):
            enter_without_waiting()
    finally:
        release.set()
        holder.join(30)
    assert seen.calls["lock_timed_out"] == 1


def test_a_lost_lock_is_reported(redis_url: str) -> None:
    storage = RedisStorage(redis_url)
    storage.init()
    recorder = Recorder()
    engine = SpiralMemory(storage, RedisCoordinator(storage, ttl_s=0.1), sigil_secret="s",
                          observer=recorder)
    lock = TenantKeys("default").lock

    def commit_after_the_lock_expired() -> None:
        with engine.sections.enter("default") as section:
            wait_until(lambda: not storage.client.exists(lock), 10,
                       message="the lock to expire")
            section.stage(Put(TenantKeys("default").memory("late"), 1))
            section.commit()

    with pytest.raises(LockLost):
        commit_after_the_lock_expired()
    assert recorder.calls["lock_lost"] == 1
