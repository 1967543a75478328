"""Store task against a no-op task: throughput and end-to-end latency, same workers.

    python3 -m uv run --frozen python -m benchmarks.tasks [--tasks N] [--latency-tasks N]

A private redis-server is the broker, result backend, store and lock service; one
`celery -A spiral_tasks worker -P prefork -c 2` node runs the tasks. For each of
spiral.noop and spiral.store_memory (one tenant, so the lock is contended):

- peak throughput: N tasks are queued while the node does not consume, then it
  consumes them; measured from the moment consuming starts to the last
  task-succeeded event;
- latency at half that peak: tasks are sent at a fixed rate, and each one's latency
  runs from just before it is sent to its task-succeeded event.

Then the same with SPIRAL_UNSAFE_UNLOCKED=1 (no locks), to measure the lock's share of
the store's p95 latency. Ratios are taken within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from benchmarks.common import Run, redis_server
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import start_worker, wait_for_workers, worker_env

NODE = "bench"


def store_kwargs(tenants: int) -> Iterator[dict[str, Any]]:
    """Store arguments, round robin over `tenants` tenants."""
    for i in itertools.count():
        yield {"content": f"benchmark memory {i} " + "x" * 100, "tenant": f"t{i % tenants}"}


@dataclass
class Finished:
    """task id -> worker timestamp of its task-succeeded event."""

    at: dict[str, float]
    lock: threading.Lock


def listen(app: Celery, finished: Finished) -> threading.Thread:
    """Record every task-succeeded event, until the broker goes away."""

    def on_succeeded(event: dict[str, Any]) -> None:
        with finished.lock:
            finished.at[event["uuid"]] = event["timestamp"]

    def run() -> None:
        with contextlib.suppress(Exception), app.connection_for_read() as connection:
            app.events.Receiver(connection, handlers={"task-succeeded": on_succeeded}
                                ).capture(limit=None, timeout=None, wakeup=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_done(finished: Finished, ids: list[str], timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while True:
        with finished.lock:
            if all(i in finished.at for i in ids):
                return max(finished.at[i] for i in ids)
        if time.monotonic() > deadline:
            raise TimeoutError("tasks did not finish")
        time.sleep(0.01)


def peak(app: Celery, finished: Finished, name: str, kwargs: Iterator[dict[str, Any]],
         count: int) -> float:
    destination = [f"{NODE}@{socket.gethostname()}"]
    app.control.cancel_consumer("spiral", destination=destination, reply=True)
    ids = [app.send_task(name, kwargs=next(kwargs)).id for _ in range(count)]
    started = time.time()
    app.control.add_consumer("spiral", destination=destination, reply=True)
    return count / (wait_done(finished, ids) - started)


def latency(app: Celery, finished: Finished, name: str, kwargs: Iterator[dict[str, Any]],
            count: int, rate: float) -> Run:
    sent: dict[str, float] = {}
    started = time.time()
    for i in range(count):
        delay = started + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        now = time.time()
        sent[app.send_task(name, kwargs=next(kwargs)).id] = now
    wait_done(finished, list(sent))
    with finished.lock:
        return Run(count, time.time() - started,
                   [(finished.at[i] - t) * 1000 for i, t in sent.items()])


def measure(label: str, tasks: int, latency_tasks: int, tenants: int,
            **extra: str) -> dict[str, Any]:
    stores, nothing = store_kwargs(tenants), itertools.repeat({})
    with redis_server() as server, tempfile.TemporaryDirectory() as workdir:
        env = worker_env(server.url, SPIRAL_MAX_MEMORY_NODES="1000000", **extra)
        worker = start_worker(env, Path(workdir), NODE, "-l", "WARNING")
        app = create_app(env)
        finished = Finished({}, threading.Lock())
        listen(app, finished)
        try:
            wait_for_workers(app, [NODE])
            for _ in range(2):  # warm up: connections, scripts, caches
                wait_done(finished, [app.send_task("spiral.store_memory",
                                                   kwargs=next(stores)).id,
                                     app.send_task("spiral.noop").id])
            noop_peak = peak(app, finished, "spiral.noop", nothing, tasks)
            store_peak = peak(app, finished, "spiral.store_memory", stores, tasks)
            rate = store_peak / 2
            noop_run = latency(app, finished, "spiral.noop", nothing, latency_tasks, rate)
            store_run = latency(app, finished, "spiral.store_memory", stores,
                                latency_tasks, rate)
        finally:
            worker.stop()
    print(f"[{label}] peak: noop {noop_peak:,.0f}/s, store {store_peak:,.0f}/s, "
          f"store/noop {store_peak / noop_peak:.2f}")
    print(f"[{label}] at {rate:,.0f}/s (half the store peak): noop {noop_run.summary()}")
    print(f"[{label}] at {rate:,.0f}/s (half the store peak): store {store_run.summary()}",
          flush=True)
    return {"store_p95": store_run.percentile(95), "rate": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per peak run")
    parser.add_argument("--latency-tasks", type=int, default=2000,
                        help="tasks per latency run")
    parser.add_argument("--tenants", type=int, default=1,
                        help="stores go round robin over this many tenants (default 1: "
                             "every store contends for one lock)")
    args = parser.parse_args()
    locked = measure("locks", args.tasks, args.latency_tasks, args.tenants)
    unlocked = measure("no locks", args.tasks, args.latency_tasks, args.tenants,
                       SPIRAL_UNSAFE_UNLOCKED="1")
    share = (locked["store_p95"] - unlocked["store_p95"]) / locked["store_p95"]
    print(f"lock's share of store p95: {share:.1%} "
          f"({locked['store_p95']:.3f} ms with locks, {unlocked['store_p95']:.3f} ms without)")


if __name__ == "__main__":
    main()
