"""The producer contract and the guarantees, against real `celery worker` processes.

Two worker nodes (prefork, two children each) consume from a Redis of this module's
own; producers are this process and spawned producer processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from spiral_tasks.config import Settings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.factory import open_engine
from spiral_tasks.keys import TenantKeys
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import CeleryProcess, child_pids, worker_env
from spiral_tasks.testing.redis_server import RedisServer
from tests.invariants import assert_consistent
from tests.processes import run_in_processes

pytestmark = pytest.mark.usefixtures("workers")
WAIT = 60


@pytest.fixture
def engine(worker_redis: RedisServer) -> Iterator[SpiralMemory]:
    """A direct view of what the workers wrote (Redis storage and locks)."""
    opened = open_engine(Settings.from_env({"REDIS_URL": worker_redis.url}))
    yield opened
    opened.close()


def call(app: Celery, name: str, **kwargs: Any) -> Any:
    return app.send_task(name, kwargs=kwargs).get(timeout=WAIT, interval=0.01)


def test_the_contract_shapes(producer: Celery) -> None:
    stored = call(producer, "spiral.store_memory", content="shape", depth="deep",
                  tenant="shapes", memory_id="s-1")
    assert set(stored) == {"id", "tenant", "spiral_id", "sigil", "position", "created"}
    assert set(stored["position"]) == {"index", "angle", "radius", "x", "y", "turn"}
    assert stored["created"] is True
    again = call(producer, "spiral.store_memory", content="shape", tenant="shapes",
                 memory_id="s-1")
    assert again == {**stored, "created": False}
    memory = call(producer, "spiral.retrieve_memory", memory_id="s-1", tenant="shapes")
    assert memory["content"] == "shape"
    assert memory["access_count"] == 1
    stats = call(producer, "spiral.stats", tenant="shapes")
    assert {"total_memories", "spirals", "consistent"} <= set(stats)
    assert stats["total_memories"] == 1
    assert call(producer, "spiral.collect_memory", memory_id="s-1", tenant="shapes") == \
        {"id": "s-1", "collected": True}
    assert call(producer, "spiral.collect_memory", memory_id="s-1", tenant="shapes") == \
        {"id": "s-1", "collected": False}
    assert call(producer, "spiral.retrieve_memory", memory_id="s-1", tenant="shapes") is None
    late = call(producer, "spiral.store_memory", content="late", tenant="shapes",
                memory_id="s-1")
    assert late["created"] is False  # the tombstone outlives any redelivery
    report = call(producer, "spiral.gc", time_budget_ms=25, tenant="shapes")
    assert {"collected", "remaining", "duration_ms"} <= set(report)
    rebuild = call(producer, "spiral.rebuild_stats", tenant="shapes")
    assert {"corrected_spirals", "unchanged_spirals", "corrected_counters", "orphans",
            "total_nodes", "duration_ms"} <= set(rebuild)
    assert rebuild["corrected_spirals"] == []


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"content": 7}, "content"),
    ({"content": "x", "depth": "abyss"}, "depth"),
    ({"content": "x", "tenant": "no/slash"}, "tenant"),
    ({"content": "x", "associations": ["nope"], "tenant": "bad"}, "associations"),
])
def test_bad_arguments_fail_naming_the_argument(producer: Celery, engine: SpiralMemory,
                                                kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        call(producer, "spiral.store_memory", **kwargs)
    assert caught.value.argument == argument
    assert engine.storage.keys("t:{bad}:mem:") == []


@pytest.mark.parametrize(("name", "args", "kwargs", "argument"), [
    ("spiral.store_memory", (), {"conten": "typo"}, "conten"),
    ("spiral.store_memory", (), {"tenant": "bad"}, "content"),
    ("spiral.store_memory", tuple(range(7)), {}, "args"),
    ("spiral.store_memory", ("x",), {"content": "x"}, "content"),
    ("spiral.store_memory", (), {"content": "x", "memory_id": ""}, "memory_id"),
    ("spiral.store_memory", (), {"content": "x", "memory_id": 0}, "memory_id"),
    ("spiral.store_memory", (), {"content": "x", "memory_id": False}, "memory_id"),
    ("spiral.store_memory", (), {"content": "x", "memory_id": []}, "memory_id"),
    ("spiral.store_memory", (), {"content": "x", "associations": {"a": 1}}, "associations"),
    ("spiral.gc", (), {"time_budget_ms": 1e30}, "time_budget_ms"),
    ("spiral.gc", (), {"time_budget_ms": 10**400}, "time_budget_ms"),
    ("spiral.collect_memory", (), {}, "memory_id"),
])
def test_a_call_that_does_not_fit_is_refused_naming_the_argument(
        producer: Celery, engine: SpiralMemory, name: str, args: tuple[Any, ...],
        kwargs: dict[str, Any], argument: str) -> None:
    """Producers send by name from any language: a wrong call is InvalidArgument (never
    Python's TypeError, never a memory under a substituted id), and writes nothing."""
    with pytest.raises(InvalidArgument) as caught:
        producer.send_task(name, args=args, kwargs=kwargs).get(timeout=WAIT, interval=0.01)
    assert caught.value.argument == argument
    assert engine.storage.keys("t:{bad}:") == []
    assert engine.storage.keys("t:{default}:mem:") == []


def _produce(url: str, producer_id: int, count: int) -> None:
    """A producer process: stores, collects a tenth of them, asks for GC."""
    app = create_app(worker_env(url))
    stored = [app.send_task("spiral.store_memory",
                            kwargs={"content": f"p{producer_id} m{i}",
                                    "depth": ["surface", "shallow", "deep", "core"][i % 4],
                                    "tenant": "load"}) for i in range(count)]
    ids = [r.get(timeout=WAIT, interval=0.01)["id"] for r in stored]
    collects = [app.send_task("spiral.collect_memory", kwargs={"memory_id": m,
                                                               "tenant": "load"})
                for m in ids[::10]]
    gcs = [app.send_task("spiral.gc", kwargs={"tenant": "load", "time_budget_ms": 5})
           for _ in range(3)]
    assert all(r.get(timeout=WAIT)["collected"] for r in collects)
    for r in gcs:
        r.get(timeout=WAIT)


def test_2000_stores_from_four_producers_keep_the_invariant(
        worker_redis: RedisServer, engine: SpiralMemory) -> None:
    run_in_processes(_produce, [(worker_redis.url, p, 500) for p in range(4)], timeout=240)
    assert assert_consistent(engine, "load") == 2000 - 4 * 50
    assert engine.rebuild_stats("load").clean


def test_a_killed_worker_child_loses_and_doubles_nothing(
        producer: Celery, workers: list[CeleryProcess], engine: SpiralMemory) -> None:
    pending = [producer.send_task("spiral.store_memory",
                                  kwargs={"content": f"k{i}", "tenant": "kill"})
               for i in range(600)]
    time.sleep(0.3)
    victims = child_pids(workers[0].pid)
    assert victims
    os.kill(victims[0], signal.SIGKILL)
    results = [r.get(timeout=WAIT, interval=0.01) for r in pending]
    ids = {r["id"] for r in results}
    assert len(ids) == 600  # every acknowledged store has its own memory
    assert assert_consistent(engine, "kill") == 600
    keys = TenantKeys("kill")
    assert all(m is not None for m in engine.storage.get_many([keys.memory(i) for i in ids]))


def lock_holder(token: bytes | str) -> int:
    """The pid a lock token names (tokens are "<pid>:<random>")."""
    text = token.decode() if isinstance(token, bytes) else token
    return int(text.split(":")[0])


def test_a_stopped_lock_holder_makes_no_stale_write(
        producer: Celery, workers: list[CeleryProcess], worker_redis: RedisServer,
        engine: SpiralMemory) -> None:
    client = redis.Redis.from_url(worker_redis.url)
    lock_key = TenantKeys("stop").lock
    pending = [producer.send_task("spiral.store_memory",
                                  kwargs={"content": f"s{i}", "tenant": "stop"})
               for i in range(1500)]
    frozen = None
    deadline = time.monotonic() + 30
    while frozen is None and time.monotonic() < deadline:
        token = client.get(lock_key)
        if token is None:
            continue
        holder = lock_holder(token)
        os.kill(holder, signal.SIGSTOP)
        time.sleep(0.05)  # a commit it sent just before stopping lands meanwhile
        if client.get(lock_key) == token:  # stopped while holding the lock
            frozen = holder
        else:
            os.kill(holder, signal.SIGCONT)
    assert frozen is not None, "never caught a worker holding the lock"
    time.sleep(3)  # the 2 s lock expires; the other workers carry on
    os.kill(frozen, signal.SIGCONT)
    results = [r.get(timeout=WAIT, interval=0.01) for r in pending]
    assert len({r["id"] for r in results}) == 1500
    assert assert_consistent(engine, "stop") == 1500
    assert engine.rebuild_stats("stop").clean
    logs = "".join(w.log() for w in workers)
    assert "LockLost" in logs  # the resumed holder's commit was refused, then retried
    client.close()


def test_every_hundredth_store_enqueues_one_gc(producer: Celery) -> None:
    received: list[str] = []

    def listen() -> None:
        with contextlib.suppress(Exception), producer.connection_for_read() as connection:
            producer.events.Receiver(connection, handlers={
                "task-received": lambda e: received.append(f"{e['name']} {e['kwargs']}"),
            }).capture(limit=None, timeout=None, wakeup=False)

    threading.Thread(target=listen, daemon=True).start()
    time.sleep(0.5)
    stores = [producer.send_task("spiral.store_memory",
                                 kwargs={"content": f"t{i}", "tenant": "trigger"})
              for i in range(300)]
    for result in stores:
        result.get(timeout=WAIT, interval=0.01)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        triggered = [r for r in received if r.startswith("spiral.gc") and "trigger" in r]
        if len(triggered) >= 3:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    triggered = [r for r in received if r.startswith("spiral.gc") and "trigger" in r]
    assert len(triggered) == 3


def test_one_startup_rebuild_for_the_whole_fleet(workers: list[CeleryProcess]) -> None:
    """Four children started at once: one rebuilds, the others see it was just done
    (a child replacing the one killed earlier in this module skips too)."""
    logs = "".join(w.log() for w in workers)
    assert logs.count("startup rebuild corrected") == 1
    assert logs.count("startup rebuild: another process rebuilt") >= 3
