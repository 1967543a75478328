"""The producer contract and the guarantees, against real `celery worker` processes.

Two worker nodes (prefork, two children each) consume from a Redis of this module's
own; producers are this process and spawned producer processes.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from spiral_tasks.audit.chain import Signer
from spiral_tasks.audit.verify import entries as audit_entries
from spiral_tasks.audit.verify import verify_locked
from spiral_tasks.config import Settings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import InvalidArgument, LockTimeout
from spiral_tasks.factory import open_engine
from spiral_tasks.keys import TenantKeys
from spiral_tasks.tasks.app import create_app
from spiral_tasks.tasks.config import DEFAULT_QUEUE
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    child_pids,
    node_name,
    process_state,
    running_workers,
    worker_env,
)
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until, wait_until_drained
from tests.conftest import WORKER_NODES
from tests.invariants import assert_consistent
from tests.processes import run_in_processes

pytestmark = pytest.mark.usefixtures("idle_workers")
WAIT = 60
STORE = "spiral.store_memory"
T = TypeVar("T")


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


def test_audit_entries_name_the_task_and_the_worker(producer: Celery,
                                                   engine: SpiralMemory) -> None:
    """The worker's engine learns its task id and node name from the task layer (it
    imports no Celery): each entry names the task that made it, on the worker that ran
    it, and the chain the workers wrote verifies."""
    tenant = f"audited-{uuid.uuid4().hex[:8]}"
    sent = [producer.send_task(STORE, kwargs={"content": f"c{n}", "tenant": tenant})
            for n in range(6)]
    stored = {r.get(timeout=WAIT, interval=0.01)["id"]: r.id for r in sent}
    collect = producer.send_task("spiral.collect_memory",
                                 kwargs={"memory_id": next(iter(stored)), "tenant": tenant})
    assert collect.get(timeout=WAIT, interval=0.01)["collected"] is True
    log = [entry for _, entry in audit_entries(engine.storage, tenant)]
    named = {i: e["task"] for e in log if e["op"] == "store" for i in e["ids"]}
    assert named == stored
    (collected,) = [e for e in log if e["op"] == "collect"]
    assert collected["task"] == collect.id
    nodes = {node_name(n) for n in WORKER_NODES}
    assert {e["worker"] for e in log} <= nodes
    assert verify_locked(engine.sections, Signer.load(engine.storage, None), tenant).ok


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


def test_gc_without_a_budget_runs_with_the_configured_one(producer: Celery) -> None:
    """Beat and the every-100-stores trigger send spiral.gc without a budget: the
    workers' SPIRAL_GC_TIME_BUDGET_MS (5 ms here) must reach the engine."""
    assert call(producer, "spiral.gc")["time_budget_ms"] == 5
    assert call(producer, "spiral.gc", tenant="shapes")["time_budget_ms"] == 5
    assert call(producer, "spiral.gc", time_budget_ms=12.5)["time_budget_ms"] == 12.5


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


class Stores:
    """Stores to one tenant, sent in batches while a test waits for something to
    happen among them: `top_up` keeps the queue from running dry, so the workers are
    busy whenever the test looks, however fast or slow the machine is. It sends at
    most `cap` in all, well under the node limit (2618), past which GC would evict
    and the count would no longer be the number of stores."""

    def __init__(self, producer: Celery, client: redis.Redis, tenant: str,
                 cap: int = 1500) -> None:
        self.producer = producer
        self.client = client
        self.tenant = tenant
        self.cap = cap
        self.pending: list[AsyncResult[Any]] = []

    def send(self, count: int) -> None:
        first = len(self.pending)
        self.pending += [self.producer.send_task(STORE, kwargs={
            "content": f"{self.tenant} {i}", "tenant": self.tenant})
            for i in range(first, first + count)]

    def top_up(self, low: int = 50) -> None:
        """Send another `low` stores if fewer than `low` are waiting in the queue (and
        the cap allows)."""
        if len(self.pending) + low <= self.cap and self.client.llen(DEFAULT_QUEUE) < low:
            self.send(low)

    def answers(self) -> list[dict[str, Any]]:
        return [r.get(timeout=WAIT, interval=0.01) for r in self.pending]


@pytest.fixture
def worker_client(worker_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(worker_redis.url)
    yield client
    client.close()


def freeze(pid: int) -> None:
    """SIGSTOP `pid` and return once it is stopped: the signal is delivered
    asynchronously, and a system call it is in (sending a commit) completes first."""
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: process_state(pid) == "T", 10, interval=0.001,
               message=f"process {pid} to be stopped")


def freeze_if(pid: int, caught: Callable[[], T | None]) -> T | None:
    """Freeze `pid` and ask `caught` whether it was caught doing what the test wants:
    if so leave it frozen and return the answer, else resume it and return None (it is
    resumed, too, if `caught` raises)."""
    freeze(pid)
    try:
        found = caught()
    except BaseException:
        os.kill(pid, signal.SIGCONT)
        raise
    if found is None:
        os.kill(pid, signal.SIGCONT)
    return found


def store_running_in(producer: Celery, worker: CeleryProcess, pid: int,
                     tenant: str) -> str | None:
    """The id of the store for `tenant` that the stopped pool child `pid` of `worker`
    is in the middle of, or None.

    The child cannot move on while stopped, so its node's answer stays true: the task
    it accepted and, with a result still PENDING, not finished (a child stores its
    result itself before it reports back; a store retried before shows RETRY and is
    passed over).
    """
    node = node_name(worker.name)
    active = producer.control.inspect(destination=[node], timeout=5).active() or {}
    for task in active.get(node, []):
        if (task["worker_pid"] == pid and task["name"] == STORE
                and task["kwargs"].get("tenant") == tenant
                and producer.AsyncResult(task["id"]).state == "PENDING"):
            return str(task["id"])
    return None


def catch_store_in_flight(producer: Celery, worker: CeleryProcess,
                          tenant: str) -> tuple[str, int] | None:
    """Freeze a pool child of `worker` in the middle of a store for `tenant`: returns
    (task id, child pid) once one is, or None (having resumed the children it tried)."""
    for pid in child_pids(worker.pid):
        task = freeze_if(pid, partial(store_running_in, producer, worker, pid, tenant))
        if task is not None:
            return task, pid
    return None


def receptions(workers: list[CeleryProcess], task_id: str) -> int:
    """How many times the workers' logs say a task message with this id arrived."""
    return sum(w.log().count(f"{STORE}[{task_id}] received") for w in workers)


def test_a_killed_worker_child_loses_and_doubles_nothing(
        producer: Celery, workers: list[CeleryProcess], worker_client: redis.Redis,
        engine: SpiralMemory) -> None:
    """A child SIGKILLed in the middle of a store: the store is redelivered and
    answered, and it is counted once."""
    stores = Stores(producer, worker_client, "kill")

    def caught() -> tuple[str, int] | None:
        stores.top_up()
        return catch_store_in_flight(producer, workers[0], "kill")

    killed, victim = wait_until(caught, WAIT, interval=0.01,
                                message="a child of w1 to be caught in the middle of a store")
    os.kill(victim, signal.SIGKILL)
    ids = {r["id"] for r in stores.answers()}
    assert len(ids) == len(stores.pending)  # every store answered, each its own memory
    assert killed in ids  # the killed store was answered (its id is its task id)
    assert "WorkerLostError('Worker exited prematurely: signal 9 (SIGKILL)" in workers[0].log()
    assert receptions(workers, killed) >= 2  # delivered to the victim, then again
    assert assert_consistent(engine, "kill") == len(ids)
    keys = TenantKeys("kill")
    assert all(m is not None for m in engine.storage.get_many([keys.memory(i) for i in ids]))


def lock_holder(token: bytes | str) -> int:
    """The pid a lock token names (tokens are "<pid>:<random>")."""
    text = token.decode() if isinstance(token, bytes) else token
    return int(text.split(":")[0])


def holding_lock_mid_store(producer: Celery, client: redis.Redis, worker: CeleryProcess,
                           pid: int, tenant: str) -> str | None:
    """The id of the store for `tenant` the stopped child `pid` of `worker` is in the
    middle of while holding the tenant's lock, or None. Asked after the stop, so a
    commit it sent just before (which releases the lock) has reached Redis first; a GC
    holding the lock is passed over (it may take and leave the lock without writing)."""
    token = client.get(TenantKeys(tenant).lock)
    if token is None or lock_holder(token) != pid:
        return None
    return store_running_in(producer, worker, pid, tenant)


def catch_lock_holder(producer: Celery, client: redis.Redis, workers: list[CeleryProcess],
                      tenant: str) -> tuple[str, int] | None:
    """Freeze each worker child in turn, keeping the first that turns out to hold
    `tenant`'s lock in the middle of a store: returns (task id, pid), or None.

    Freezing first and looking after, rather than watching the lock and stopping its
    holder, stops a child at a random moment: a holder seen from outside has usually
    sent its commit before a signal can reach it.
    """
    for worker in workers:
        for pid in child_pids(worker.pid):
            task = freeze_if(pid, partial(holding_lock_mid_store, producer, client, worker,
                                          pid, tenant))
            if task is not None:
                return task, pid
    return None


def test_a_stopped_lock_holder_makes_no_stale_write(
        producer: Celery, workers: list[CeleryProcess], worker_client: redis.Redis,
        engine: SpiralMemory) -> None:
    """The lock holder stopped mid-store past its lock's expiry: the others go on, and
    its commit on resuming is refused (LockLost) and retried, so nothing is lost or
    doubled."""
    stores = Stores(producer, worker_client, "stop")

    def caught() -> tuple[str, int] | None:
        stores.top_up()
        return catch_lock_holder(producer, worker_client, workers, "stop")

    task, frozen = wait_until(caught, WAIT, interval=0.01,
                              message="a worker child holding tenant stop's lock mid-store")
    try:
        stores.send(100)  # work for the others once the frozen holder's lock expires

        def total() -> int:
            stats = wait_until(lambda: engine.stats("stop"), WAIT, ignoring=(LockTimeout,),
                               message="the lock of tenant stop, to read its stats")
            return stats.total_memories

        # Taking the lock for stats proves the frozen holder's lock expired; a larger
        # total afterwards, that another worker committed after it.
        before = total()
        wait_until(lambda: total() > before, WAIT,
                   message=f"another worker to commit to tenant stop after {before}")
    finally:
        os.kill(frozen, signal.SIGCONT)
    assert len({r["id"] for r in stores.answers()}) == len(stores.pending)
    assert assert_consistent(engine, "stop") == len(stores.pending)
    assert engine.rebuild_stats("stop").clean
    retries = [line for w in workers for line in w.log().splitlines()
               if f"{STORE}[{task}] retry:" in line]
    assert any("LockLost" in line for line in retries), retries  # refused, then retried


class EventLog:
    """Every event on the broker, captured by a receiver in a thread. Its death fails
    the test (`check`), and `mark` proves it has seen everything published before."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.events: list[dict[str, Any]] = []
        self.failure: BaseException | None = None
        self._connection = app.connection_for_read()
        self._receiver = app.events.Receiver(self._connection,
                                             handlers={"*": self.events.append})
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def _listen(self) -> None:
        try:
            self._receiver.capture(limit=None, timeout=None, wakeup=False)
        except BaseException as exc:  # kept for the test thread to raise
            self.failure = exc

    def __enter__(self) -> EventLog:
        self._thread.start()
        self.mark()  # subscribed: nothing sent from now on is missed
        return self

    def __exit__(self, *_: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(timeout=10)
        self._connection.release()

    def check(self) -> list[dict[str, Any]]:
        if self.failure is not None:
            raise AssertionError("the event receiver died") from self.failure
        assert self._thread.is_alive(), "the event receiver stopped"
        return list(self.events)

    def mark(self) -> None:
        """Publish marker events until the receiver sees one: Redis delivers a channel's
        messages in publishing order, so every event published before it was seen too
        (and until the receiver has subscribed, markers are simply lost)."""
        marker = uuid.uuid4().hex

        def seen() -> bool:
            with self.app.events.default_dispatcher() as dispatcher:
                dispatcher.send("spiral-marker", marker=marker)
            return any(e.get("marker") == marker for e in self.check())

        wait_until(seen, WAIT, interval=0.05, message="the event receiver to see a marker")

    def matching(self, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [e for e in self.check() if match(e)]


def enable_task_events(app: Celery, workers: list[CeleryProcess]) -> None:
    """Switch the workers' task events on as an operator does (`celery control
    enable_events`; they are off by default, README "Task events"), until every node
    answered."""
    nodes = {node_name(w.name) for w in workers}

    def answered() -> bool:
        replies = app.control.broadcast("enable_events", reply=True, timeout=1.0,
                                        destination=sorted(nodes)) or []
        return nodes <= {node for reply in replies for node in reply}

    wait_until(answered, WAIT, interval=0.1, message=f"{sorted(nodes)} to enable events")


def is_trigger_gc(event: dict[str, Any]) -> bool:
    return (event["type"] == "task-received" and event["name"] == "spiral.gc"
            and "'trigger'" in event["kwargs"])


def test_every_hundredth_store_enqueues_one_gc(
        producer: Celery, workers: list[CeleryProcess], engine: SpiralMemory) -> None:
    """300 stores to one tenant: exactly three GC tasks for it were received."""
    enable_task_events(producer, workers)
    with EventLog(producer) as events:
        stores = [producer.send_task(STORE, kwargs={"content": f"t{i}", "tenant": "trigger"})
                  for i in range(300)]
        for result in stores:
            result.get(timeout=WAIT, interval=0.01)
        # Each store enqueued its GC before answering; once the workers are idle every
        # GC has run, and the marker proves the receiver saw all their events.
        wait_until_drained(producer, WAIT, [node_name(w.name) for w in workers])
        events.mark()
        triggered = events.matching(is_trigger_gc)
    assert len(triggered) == 3, triggered
    assert assert_consistent(engine, "trigger") == 300


def test_one_startup_rebuild_for_the_whole_fleet(tmp_path: Path) -> None:
    """A fleet of its own (a fresh Redis, two nodes of two children started together):
    one child rebuilds, the other three see it was just done, and so does a child the
    pool starts to replace a killed one within the window (SPIRAL_STARTUP_REBUILD_WINDOW_S,
    default 60 s)."""
    server = RedisServer(tmp_path / "redis").start()
    env = worker_env(server.url)
    app = create_app(env)
    rebuilt, skipped = "startup rebuild corrected", "startup rebuild: another process rebuilt"

    def count(nodes: list[CeleryProcess], line: str) -> int:
        return sum(node.log().count(line) for node in nodes)

    try:
        with running_workers(app, env, tmp_path / "fleet", ["f1", "f2"]) as nodes:
            wait_until(lambda: count(nodes, rebuilt) + count(nodes, skipped) >= 4, WAIT,
                       message="all four children to log their startup rebuild decision")
            os.kill(child_pids(nodes[0].pid)[0], signal.SIGKILL)
            wait_until(lambda: count(nodes, skipped) >= 4, WAIT,
                       message="the replacement child to log its startup rebuild decision")
            assert count(nodes, rebuilt) == 1
            assert count(nodes, skipped) == 4
    finally:
        app.close()
        server.stop()
