"""Redis, the broker and the store at once, restarted under load (appendfsync always)."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery

from spiral_tasks.config import Settings
from spiral_tasks.factory import open_engine
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import start_worker, wait_for_workers, worker_env
from spiral_tasks.testing.redis_server import RedisServer
from tests.invariants import assert_consistent

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


def store_until_acknowledged(app: Celery, memory_id: str, errors: list[str]) -> dict[str, Any]:
    """What a careful producer does: resend (same id, so idempotent) until answered."""
    for _ in range(60):
        try:
            result = app.send_task("spiral.store_memory", kwargs={
                "content": f"durable {memory_id}", "tenant": "fault",
                "memory_id": memory_id})
            answer: dict[str, Any] = result.get(timeout=10, interval=0.02)
            return answer
        except Exception as exc:  # connection refused, timeout, task failed: all say why
            errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.2)
    raise AssertionError(f"{memory_id} was never acknowledged")


def test_redis_restart_mid_run(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start(*DURABLE)
    env = worker_env(server.url)
    worker = start_worker(env, tmp_path / "worker", "fault")
    app = create_app(env)
    try:
        wait_for_workers(app, ["fault"])
        acknowledged: dict[str, dict[str, Any]] = {}
        errors: list[str] = []

        def produce(first: int) -> None:
            for i in range(first, first + 150):
                acknowledged[f"m{i}"] = store_until_acknowledged(app, f"m{i}", errors)

        producers = [threading.Thread(target=produce, args=(n * 150,)) for n in range(3)]
        for p in producers:
            p.start()
        time.sleep(1.0)
        server.stop()  # SIGTERM: Redis goes down mid-run, durable to the last write
        time.sleep(2.0)
        server.start(*DURABLE)
        for p in producers:
            p.join(timeout=300)
        assert len(acknowledged) == 450
        assert errors, "the outage was not noticed"
        engine = open_engine(Settings.from_env({"REDIS_URL": server.url}))
        assert assert_consistent(engine, "fault") == 450
        assert engine.rebuild_stats("fault").clean
        engine.close()
        log = worker.log()
        assert "Connection" in log or "Retry" in log or "retry" in log
    finally:
        # Results still subscribed must let go while their Redis is up, not later in
        # another test's garbage collection.
        gc.collect()
        app.close()
        worker.stop()
        server.stop()
