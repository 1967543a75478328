"""Redis coordination: fenced commits, lock timeouts, cache validity across engines."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from spiral_tasks.coordination.redis import RedisCoordinator
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import LockLost, LockTimeout
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.base import Put
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.testing.engines import engine_over
from tests.invariants import assert_consistent
from tests.processes import run_in_processes


def open_engine(url: str, **limits: float) -> SpiralMemory:
    storage = RedisStorage(url)
    storage.init()
    return engine_over(storage, sigil_secret="s", **limits)


def test_a_holder_whose_lock_expired_cannot_write(redis_url: str) -> None:
    storage = RedisStorage(redis_url)
    storage.init()
    slow = RedisCoordinator(storage, ttl_s=0.2)
    fast = RedisCoordinator(storage)
    with slow.critical("t") as stale_fence:
        time.sleep(0.3)  # a GC pause, a SIGSTOP: the lock expires meanwhile
        with fast.critical("t", timeout_s=1) as fresh_fence:
            fresh_fence.commit([Put("t:{t}:x", "fresh")], final=True)
        with pytest.raises(LockLost, match="no longer held"):
            stale_fence.commit([Put("t:{t}:x", "stale"), Put("t:{t}:y", "stale")])
    assert storage.get("t:{t}:x") == "fresh"
    assert storage.get("t:{t}:y") is None


def test_a_held_lock_times_out_without_writing(redis_url: str) -> None:
    engine = open_engine(redis_url, wait_s=0.2)
    # A long TTL: a stalled machine must not let the held lock expire mid-test.
    holder = RedisCoordinator(engine.storage, ttl_s=30)  # type: ignore[arg-type]
    with holder.critical("default"), pytest.raises(LockTimeout, match="stayed locked"):
        engine.store("blocked")
    assert engine.storage.keys("t:{default}:mem:") == []
    assert engine.store("free again").created


def test_final_commit_releases_the_lock_in_the_same_step(redis_url: str) -> None:
    storage = RedisStorage(redis_url)
    storage.init()
    coordinator = RedisCoordinator(storage)
    raw = redis.Redis.from_url(redis_url)
    with coordinator.critical("t") as fence:
        assert raw.exists(TenantKeys("t").lock)
        fence.commit([Put("t:{t}:a", 1)], final=True)
        assert not raw.exists(TenantKeys("t").lock)
        with pytest.raises(LockLost, match="already released"):
            fence.commit([Put("t:{t}:b", 2)])
    raw.close()


def test_engines_in_turn_see_each_others_writes(redis_url: str) -> None:
    first, second = open_engine(redis_url), open_engine(redis_url)
    for i in range(60):
        (first if i % 2 else second).store(f"m{i}", depth=["surface", "deep"][i % 3 % 2])
        if i % 10 == 9:
            (second if i % 2 else first).collect(
                first.storage.keys("t:{default}:mem:")[0].split(":mem:")[1])
    assert assert_consistent(first) == 54
    assert first.rebuild_stats().clean


def _store_many(url: str, worker: int) -> None:
    engine = open_engine(url)
    for i in range(150):
        engine.store(f"w{worker} m{i}", depth=["surface", "shallow", "deep"][i % 3])
        if i % 25 == 0:
            engine.gc(2)
    engine.close()


def test_processes_storing_into_one_tenant_keep_the_invariant(redis_url: str) -> None:
    run_in_processes(_store_many, [(redis_url, w) for w in range(4)], timeout=120)
    engine = open_engine(redis_url)
    assert assert_consistent(engine) == 600
    positions = {(m["spiral_id"], m["position"]["index"])
                 for _, m in engine.storage.scan("t:{default}:mem:")}
    assert len(positions) == 600  # no two memories share a slot
    assert engine.rebuild_stats().clean


def test_events_are_published_with_the_commit(redis_url: str) -> None:
    engine = open_engine(redis_url)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.psubscribe("spiralmemory:*")
    assert pubsub.get_message(timeout=1)["type"] == "psubscribe"
    stored = engine.store("heard")
    engine.collect(stored.id)
    engine.gc()
    engine.rebuild_stats()
    heard: list[str] = []
    deadline = time.monotonic() + 5
    while len(heard) < 4 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "pmessage":
            heard.append(message["channel"].decode())
    assert heard == ["spiralmemory:stored", "spiralmemory:collected",
                     "spiralmemory:gc_tick", "spiralmemory:rebuild_stats"]
    pubsub.close()
    client.close()


def test_long_sections_keep_their_lock(redis_url: str) -> None:
    storage = RedisStorage(redis_url)
    storage.init()
    coordinator = RedisCoordinator(storage, ttl_s=1.0)
    other = RedisCoordinator(storage)
    stolen = threading.Event()
    with coordinator.critical("t") as fence:
        for _ in range(4):  # 1.6 s in all: longer than the lock lives unextended
            time.sleep(0.4)
            fence.extend()
            try:
                with other.critical("t", timeout_s=0):
                    stolen.set()
            except LockTimeout:
                pass
        fence.commit([Put("t:{t}:done", True)], final=True)
    assert not stolen.is_set()
    assert storage.get("t:{t}:done") is True
