"""What each kind of Celery event costs the process that sends it.

    python3 -m uv run --frozen python -m benchmarks.task_events [--events N] [--rounds 3]

A private redis-server is the broker. Each event is sent as a worker sends it: through
the app's event dispatcher, one PUBLISH on the events exchange, with the fields the
worker gives it (a store's arguments and result as their reprs, the heartbeat's
software and load fields). Wall µs per event includes the round trip the sending
process waits for; CPU µs is that process's own time. task-sent is measured as its
producer pays it: `send_task` with `task_send_sent_event` on, against off.

How often each is sent decides what it costs a worker: task-received, -started and
-succeeded once per task each (all three in the worker's main process, which also
receives, dispatches and acknowledges every task); worker-heartbeat once every 2 s
whatever the load (Celery's default interval).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.worker.state import SOFTWARE_INFO

from benchmarks.common import redis_server
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import worker_env

#: A store's fields as the worker reprs them into its events.
STORE_KWARGS = repr({"content": "benchmark memory 1 " + "x" * 100, "tenant": "t0"})
STORE_RESULT = repr({"id": str(uuid.uuid4()), "tenant": "t0", "spiral": 3, "position": 17,
                     "depth": "shallow", "type": "general", "evicted": [], "gc_due": False,
                     "created_at": 1764158000.123, "sigil": "x" * 86})
HEARTBEAT_INTERVAL_S = 2.0


def task_fields(kind: str) -> dict[str, Any]:
    task_id = str(uuid.uuid4())
    if kind == "task-received":
        return {"uuid": task_id, "name": "spiral.store_memory", "args": "()",
                "kwargs": STORE_KWARGS, "root_id": task_id, "parent_id": None,
                "retries": 0, "eta": None, "expires": None}
    if kind == "task-started":
        return {"uuid": task_id}  # and the child's pid, which every event carries
    if kind == "task-succeeded":
        return {"uuid": task_id, "result": STORE_RESULT, "runtime": 0.0031}
    return {"freq": HEARTBEAT_INTERVAL_S, "active": 1, "processed": 1000,
            "loadavg": (1.0, 1.0, 1.0), **SOFTWARE_INFO}


def timed(call: Callable[[], object], count: int) -> tuple[float, float]:
    """Wall and CPU µs per call."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        call()
    return ((time.perf_counter() - wall) * 1e6 / count,
            (time.process_time() - cpu) * 1e6 / count)


def events_cost(app: Celery, count: int) -> dict[str, tuple[float, float]]:
    with app.connection_for_write() as connection:
        dispatcher = app.events.Dispatcher(connection, hostname=f"bench@{socket.gethostname()}",
                                           enabled=True)
        costs = {}
        for kind in ("task-received", "task-started", "task-succeeded", "worker-heartbeat"):
            def send(kind: str = kind) -> None:
                dispatcher.send(kind, **task_fields(kind))

            send()  # warm up: the connection
            costs[kind] = timed(send, count)
        dispatcher.close()
    return costs


def sent_cost(url: str, count: int) -> tuple[float, float]:
    """Extra wall and CPU µs per `send_task` with task-sent on."""
    apps = {on: create_app(worker_env(url, SPIRAL_TASK_EVENTS=on)) for on in ("1", "0")}
    for app in apps.values():
        app.send_task("spiral.noop")
    on = timed(lambda: apps["1"].send_task("spiral.noop"), count)
    off = timed(lambda: apps["0"].send_task("spiral.noop"), count)
    return on[0] - off[0], on[1] - off[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events of each kind")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    samples: dict[str, list[tuple[float, float]]] = {}
    with redis_server() as server:
        app = create_app(worker_env(server.url))
        for _ in range(args.rounds):
            for kind, cost in events_cost(app, args.events).items():
                samples.setdefault(kind, []).append(cost)
            samples.setdefault("task-sent (producer)", []).append(
                sent_cost(server.url, args.events))
            server.client().flushall()
    print(f"{args.rounds} rounds of {args.events:,} events each, median (min-max):")
    print(f"{'event':24s} {'wall µs':>22s} {'CPU µs':>22s}   sent")
    for kind, costs in samples.items():
        walls, cpus = [c[0] for c in costs], [c[1] for c in costs]
        often = (f"every {HEARTBEAT_INTERVAL_S:g} s" if kind == "worker-heartbeat"
                 else "once per task")
        print(f"{kind:24s} {statistics.median(walls):8.1f} ({min(walls):6.1f}-{max(walls):6.1f})"
              f" {statistics.median(cpus):8.1f} ({min(cpus):6.1f}-{max(cpus):6.1f})   {often}")


if __name__ == "__main__":
    main()
