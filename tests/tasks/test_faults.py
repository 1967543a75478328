"""Redis, the broker and the store at once, restarted under load (appendfsync always)."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.exceptions import TimeoutError as ResultTimeout
from kombu.exceptions import OperationalError

from spiral_tasks.config import Settings
from spiral_tasks.factory import open_engine
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    start_worker,
    wait_for_workers,
    worker_env,
)
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until
from tests.invariants import assert_consistent

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
#: What the worker's consumer logs when its broker connection drops, and when it has one.
LOST = "consumer: Connection to broker lost"
CONNECTED = "Connected to redis://"
#: What a producer may see while its Redis is down: a refused or dropped connection, or
#: an answer that never came (its result was published while it was not subscribed).
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OperationalError,
                 ConnectionError, TimeoutError, ResultTimeout)


def outage_symptom(error: Exception) -> bool:
    """Whether a producer's error is one the outage explains (the result consumer's
    "must be restarted" is its way of saying it could not reconnect)."""
    return isinstance(error, OUTAGE_ERRORS) or (
        isinstance(error, RuntimeError) and "must be restarted" in str(error))


def reconnected_after_loss(log: str, port: int, restarted: bool) -> bool:
    """Whether the worker log shows the broker connection lost and, after that, a
    connection to the restarted server (by the same worker, or by the one the supervisor
    started when kombu gave up with "Unrecoverable error")."""
    marks = [LOST, *(["Unrecoverable error"] if restarted else [])]
    losses = [log.index(mark) for mark in marks if mark in log]
    if not losses:
        return False
    after = log[min(losses):].splitlines()
    return any(CONNECTED in line and f"127.0.0.1:{port}/" in line for line in after)


#: How long the careful producer waits before resending after an error.
RESEND_AFTER_S = 0.2


class CarefulProducer:
    """What a careful producer does: resend (same id, so idempotent) until answered.

    Celery's Redis result consumer can give up reconnecting after an outage ("Retry
    limit exceeded ... The Celery application must be restarted"): then the producer
    makes itself a new app, as the message says.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.app: Celery = create_app(env)
        self.errors: list[Exception] = []
        self._renewing = threading.Lock()

    def renew(self, broken: Celery) -> None:
        with self._renewing:
            if self.app is broken:
                self.app = create_app(self.env)

    def store(self, memory_id: str) -> dict[str, Any]:
        for _ in range(60):
            app = self.app
            try:
                result = app.send_task("spiral.store_memory", kwargs={
                    "content": f"durable {memory_id}", "tenant": "fault",
                    "memory_id": memory_id})
                answer: dict[str, Any] = result.get(timeout=10, interval=0.02)
                return answer
            except Exception as exc:  # refused, timed out, failed: each says why
                self.errors.append(exc)
                if "must be restarted" in str(exc):
                    self.renew(app)
                time.sleep(RESEND_AFTER_S)  # a producer's backoff, not a wait for an event
        raise AssertionError(f"{memory_id} was never acknowledged")


def supervise(worker: CeleryProcess, stop: threading.Event, restarts: list[int]) -> None:
    """Restart the worker if it exits, as docker-compose (`restart: unless-stopped`) or
    Kubernetes would: kombu's Redis transport can stop a worker with "Unrecoverable
    error" when the connection drops while it acknowledges a message (a long-standing
    kombu issue). Late acks keep that message in the broker for redelivery."""
    while not stop.wait(0.2):
        if worker.process is not None and worker.process.poll() is not None:
            restarts.append(worker.process.returncode)
            worker.start()


def test_redis_restart_mid_run(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start(*DURABLE)
    env = worker_env(server.url)
    worker = start_worker(env, tmp_path / "worker", "fault")
    producer = CarefulProducer(env)
    stop_supervising = threading.Event()
    restarts: list[int] = []
    supervisor = threading.Thread(target=supervise, args=(worker, stop_supervising, restarts))
    try:
        wait_for_workers(producer.app, ["fault"])
        supervisor.start()
        acknowledged: dict[str, dict[str, Any]] = {}

        def produce(first: int) -> None:
            for i in range(first, first + 150):
                acknowledged[f"m{i}"] = producer.store(f"m{i}")

        producers = [threading.Thread(target=produce, args=(n * 150,)) for n in range(3)]
        for p in producers:
            p.start()
        wait_until(lambda: len(acknowledged) >= 30, 120,
                   message="the producers' first 30 stores to be acknowledged")
        server.stop()  # SIGTERM: Redis goes down mid-run, durable to the last write
        wait_until(lambda: LOST in worker.log() or restarts, 60,
                   message="the worker to notice its broker went away")
        server.start(*DURABLE)
        for p in producers:
            p.join(timeout=300)
        assert len(acknowledged) == 450
        unexplained = [e for e in producer.errors if not outage_symptom(e)]
        assert not unexplained, f"producer errors the outage does not explain: {unexplained}"
        engine = open_engine(Settings.from_env({"REDIS_URL": server.url}))
        assert assert_consistent(engine, "fault") == 450
        assert engine.rebuild_stats("fault").clean
        engine.close()
        assert reconnected_after_loss(worker.log(), server.port, bool(restarts)), \
            worker.log()[-3000:]
    finally:
        # Results still subscribed must let go while their Redis is up, not later in
        # another test's garbage collection.
        gc.collect()
        producer.app.close()
        stop_supervising.set()
        if supervisor.is_alive():
            supervisor.join()
        worker.stop()
        server.stop()
