"""The SQLite transport through kombu connections, across real processes (spawned,
so each one opens the file like a separate program would). Processes report back
through small files in the test's folder."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from kombu import Connection, Consumer, Exchange, Queue
from kombu.message import Message

import spiral_tasks.brokers.registry  # noqa: F401 - registers spiral-sqlite://
from spiral_tasks.brokers.sqlite import Channel
from spiral_tasks.brokers.store import shared_store
from spiral_tasks.brokers.urls import sqlite_url
from spiral_tasks.testing.waiting import wait_until

TASKS = Exchange("tasks", type="direct")
WORK = Queue("work", TASKS, routing_key="work")
BROADCAST = Exchange("broadcast", type="fanout")
EVENTS = Exchange("events", type="topic")  # as Celery's task events
SPAWN = multiprocessing.get_context("spawn")


#: How long the test's consumer waits before looking at an empty queue again.
POLL_S = 0.01


def url(folder: Path) -> str:
    return sqlite_url(folder / "broker.sqlite3")


def counts(folder: Path) -> dict[str, int]:
    return shared_store(folder / "broker.sqlite3").counts()


def publish(folder: Path, bodies: list[Any], exchange: Exchange = TASKS,
            routing_key: str = "work") -> None:
    with Connection(url(folder)) as connection:
        producer = connection.Producer()
        for body in bodies:
            producer.publish(body, exchange=exchange, routing_key=routing_key,
                             declare=[WORK] if exchange is TASKS else [exchange])


def drain(folder: Path) -> list[Message]:
    """Every message `work` holds now, each acknowledged."""
    got: list[Message] = []
    with Connection(url(folder)) as connection:
        channel = connection.channel()
        while (message := channel.basic_get("work")) is not None:
            got.append(message)
            message.ack()
    return got


def spawn(target: Any, *args: Any) -> BaseProcess:
    process = SPAWN.Process(target=target, args=args)
    process.start()
    return process


# --- what the spawned processes run -------------------------------------------------

def claim_and_hang(folder: str) -> None:
    """Fetch one message without acknowledging it, say which, then wait to be killed."""
    with Connection(url(Path(folder))) as connection:
        message = connection.channel().basic_get("work")
        assert message is not None
        (Path(folder) / f"claimed-{os.getpid()}").write_text(json.dumps(message.payload))
        signal.pause()


def publish_large(folder: str, producer: int, count: int) -> None:
    """`count` messages of 1 MiB, each carrying the SHA-256 of its content."""
    bodies = []
    for i in range(count):
        content = os.urandom(512 * 1024).hex()  # 1 MiB of text
        bodies.append({"producer": producer, "i": i, "content": content,
                       "sha256": hashlib.sha256(content.encode()).hexdigest()})
    publish(Path(folder), bodies)


def listen(folder: str, name: str, exchange: Exchange, binding_key: str) -> None:
    """Bind a private queue to `exchange`, say so, write the first messages that
    arrive."""
    queue = Queue(f"listener-{name}", exchange, routing_key=binding_key, auto_delete=True)
    received: list[Any] = []
    with Connection(url(Path(folder))) as connection, \
            Consumer(connection, [queue], no_ack=True,
                     callbacks=[lambda body, _: received.append(body)]):
        (Path(folder) / f"bound-{name}").write_text("")
        while not received:
            connection.drain_events(timeout=30)
    (Path(folder) / f"got-{name}").write_text(json.dumps(received))


def bind_claim_and_hang(folder: str, name: str) -> None:
    """Like a worker: a private mailbox bound to the fanout exchange, and one task
    message fetched and never acknowledged."""
    with Connection(url(Path(folder))) as connection:
        channel = connection.channel()
        Queue(f"mailbox-{name}", BROADCAST, auto_delete=True)(channel).declare()
        message = channel.basic_get("work")
        assert message is not None
        (Path(folder) / f"ready-{name}").write_text("")
        signal.pause()


# --- tests --------------------------------------------------------------------------

def test_publish_consume_ack(tmp_path: Path) -> None:
    publish(tmp_path, [{"n": n} for n in range(5)])
    assert counts(tmp_path)["ready"] == 5
    received: list[Any] = []
    with Connection(url(tmp_path)) as connection:
        def on_message(body: Any, message: Message) -> None:
            received.append(body)
            assert counts(tmp_path)["claimed"] == 1  # claimed while being handled
            message.ack()

        with Consumer(connection, [WORK], callbacks=[on_message]):
            for _ in range(5):
                connection.drain_events(timeout=5)
    assert received == [{"n": n} for n in range(5)]  # in order
    assert counts(tmp_path) | {"queues": 0, "bindings": 0} == {
        "ready": 0, "claimed": 0, "queues": 0, "bindings": 0}


def test_reject_with_requeue_puts_the_message_back_first(tmp_path: Path) -> None:
    publish(tmp_path, ["first", "second"])
    with Connection(url(tmp_path)) as connection:
        channel = connection.channel()
        message = channel.basic_get("work")
        assert message is not None
        message.reject(requeue=True)
        again = channel.basic_get("work")
        assert again is not None
        assert again.payload == "first"
        assert again.delivery_info["redelivered"] is True
        again.ack()
    assert [m.payload for m in drain(tmp_path)] == ["second"]


def test_closing_a_channel_releases_what_it_did_not_acknowledge(tmp_path: Path) -> None:
    publish(tmp_path, ["kept"])
    with Connection(url(tmp_path)) as connection:
        assert connection.channel().basic_get("work") is not None
        assert counts(tmp_path)["claimed"] == 1
    assert counts(tmp_path)["claimed"] == 0
    assert [m.payload for m in drain(tmp_path)] == ["kept"]


def test_a_killed_consumers_message_is_redelivered_exactly_once(tmp_path: Path) -> None:
    publish(tmp_path, ["a", "b", "c"])
    consumer = spawn(claim_and_hang, str(tmp_path))
    claimed_file = tmp_path / f"claimed-{consumer.pid}"
    wait_until(claimed_file.exists, 60, message="the consumer to claim a message")
    claimed = json.loads(claimed_file.read_text())
    store = shared_store(tmp_path / "broker.sqlite3")
    store.reap()
    assert counts(tmp_path)["claimed"] == 1, "a live consumer's claim must be kept"
    assert consumer.pid is not None
    os.kill(consumer.pid, signal.SIGKILL)
    consumer.join(timeout=30)
    # The next consumer to connect releases the dead one's claim.
    delivered = drain(tmp_path)
    bodies = [m.payload for m in delivered]
    assert sorted(bodies) == ["a", "b", "c"]
    assert bodies.count(claimed) == 1
    redelivered = [m.payload for m in delivered if m.delivery_info["redelivered"]]
    assert redelivered == [claimed]
    assert counts(tmp_path)["ready"] == counts(tmp_path)["claimed"] == 0
    assert drain(tmp_path) == []


def test_concurrent_large_publishers_never_yield_a_partial_message(tmp_path: Path) -> None:
    producers, each = 3, 8
    publishers = [spawn(publish_large, str(tmp_path), p, each) for p in range(producers)]
    seen: set[tuple[int, int]] = set()
    with Connection(url(tmp_path)) as connection:
        channel = connection.channel()
        while len(seen) < producers * each:
            message = channel.basic_get("work")
            if message is None:
                assert any(p.is_alive() for p in publishers) or counts(tmp_path)["ready"], \
                    f"publishers done, {len(seen)} of {producers * each} messages seen"
                time.sleep(POLL_S)  # a consumer's polling interval: nothing to read yet
                continue
            body = message.payload
            assert hashlib.sha256(body["content"].encode()).hexdigest() == body["sha256"]
            assert (body["producer"], body["i"]) not in seen
            seen.add((body["producer"], body["i"]))
            message.ack()
    for publisher in publishers:
        publisher.join(timeout=60)
        assert publisher.exitcode == 0
    assert counts(tmp_path)["ready"] == counts(tmp_path)["claimed"] == 0


def test_fanout_reaches_every_process(tmp_path: Path) -> None:
    names = ["one", "two"]
    listeners = [spawn(listen, str(tmp_path), name, BROADCAST, "") for name in names]
    for name in names:
        wait_until((tmp_path / f"bound-{name}").exists, 60, message=f"listener {name} to bind")
    publish(tmp_path, [{"hello": "all"}], exchange=BROADCAST, routing_key="")
    for name, listener in zip(names, listeners, strict=True):
        listener.join(timeout=60)
        assert listener.exitcode == 0
        assert json.loads((tmp_path / f"got-{name}").read_text()) == [{"hello": "all"}]


def test_topic_bindings_route_across_processes(tmp_path: Path) -> None:
    """Celery's task events: a receiver in one process binds `task.#`, a worker in
    another publishes `task.succeeded`."""
    listener = spawn(listen, str(tmp_path), "events", EVENTS, "task.#")
    wait_until((tmp_path / "bound-events").exists, 60, message="the event receiver to bind")
    with Connection(url(tmp_path)) as connection:
        producer = connection.Producer()
        producer.publish({"type": "worker-heartbeat"}, exchange=EVENTS,
                         routing_key="worker.heartbeat", declare=[EVENTS])
        producer.publish({"type": "task-succeeded"}, exchange=EVENTS,
                         routing_key="task.succeeded", declare=[EVENTS])
    listener.join(timeout=60)
    assert listener.exitcode == 0
    assert json.loads((tmp_path / "got-events").read_text()) == [{"type": "task-succeeded"}]


def test_nothing_grows_when_consumers_die(tmp_path: Path) -> None:
    """Rounds of consumers that bind a private queue and hold a message, then are
    killed: after each round the broker holds what it held before."""
    publish(tmp_path, [f"task {n}" for n in range(3)])
    baseline = counts(tmp_path)
    for round_ in range(2):
        names = [f"{round_}-{n}" for n in range(3)]
        consumers = [spawn(bind_claim_and_hang, str(tmp_path), name) for name in names]
        for name in names:
            wait_until((tmp_path / f"ready-{name}").exists, 60, message=f"consumer {name}")
        assert counts(tmp_path)["claimed"] == 3
        for consumer in consumers:
            assert consumer.pid is not None
            os.kill(consumer.pid, signal.SIGKILL)
            consumer.join(timeout=30)
        # Broadcasts to the dead mailboxes land in them until they are dropped.
        publish(tmp_path, ["broadcast"], exchange=BROADCAST, routing_key="")
        with Connection(url(tmp_path)) as connection:
            connection.connect()  # a process connecting sweeps the dead ones' state
        assert counts(tmp_path) == baseline


def test_private_queues_are_remembered_across_connections(tmp_path: Path) -> None:
    """A queue and binding declared by one connection serve a publisher in another
    process's connection: routing is read from the file, not from process memory."""
    with Connection(url(tmp_path)) as connection:
        channel: Channel = connection.channel()
        Queue("mine", TASKS, routing_key="mine", auto_delete=True)(channel).declare()
        assert channel.store.has_queue("mine")
    publish(tmp_path, ["routed"], routing_key="mine")
    with Connection(url(tmp_path)) as connection:
        message = connection.channel().basic_get("mine")
        assert message is not None
        assert message.payload == "routed"
        message.ack()
