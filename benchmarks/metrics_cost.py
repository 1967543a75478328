"""What Prometheus metrics cost the store path: with and without, in one run.

    python3 -m uv run --frozen python -m benchmarks.metrics_cost [--rounds 3] [--tasks N]

Through a real worker: one `celery -A spiral_tasks worker -P prefork -c 2` node on a
private redis-server, started with metrics on (`METRICS_PORT` set: the exporter, the
multiprocess files, every observer call) and off (`METRICS_PORT=0`), alternately,
round after round; each round measures the store task's peak throughput as
`benchmarks.tasks` does (N stores queued while the node does not consume, timed to the
last result written). In process: `engine.store` from 8 threads with the
Prometheus observer (multiprocess mode, files in a temporary folder) against none, per
backend, alternately too. Prints the medians and the ratio on/off; the target is a
cost under 5% (a ratio above 0.95).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis

from benchmarks.common import BACKENDS, drive, engine_over, median, open_backend, redis_server
from benchmarks.tasks import NODE, finished_at, peak, store_kwargs
from spiral_tasks.metrics.folder import ensure_multiprocess
from spiral_tasks.metrics.observer import PrometheusObserver
from spiral_tasks.observe import NO_OBSERVER, Observer
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import start_worker, wait_for_workers, worker_env
from spiral_tasks.testing.redis_server import free_port

IN_PROCESS_CALLERS = 8


def task_peak(redis_url: str, workdir: Path, tasks: int, **settings: str) -> float:
    """One node's store-task peak, stores/s, with `settings` in its environment (e.g.
    METRICS_PORT), into an empty Redis: a tenant grown by the run before would make
    this one slower."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    env = worker_env(redis_url, SPIRAL_MAX_MEMORY_NODES="1000000", **settings)
    worker = start_worker(env, workdir, NODE, "-l", "WARNING")
    app = create_app(env)
    client = redis.Redis.from_url(redis_url)
    stores = store_kwargs(1)
    try:
        wait_for_workers(app, [NODE])
        for _ in range(2):  # warm up: connections, scripts, caches
            finished_at(app, client, [app.send_task("spiral.store_memory",
                                                    kwargs=next(stores)).id])
        return peak(app, client, "spiral.store_memory", stores, tasks)[0]
    finally:
        worker.stop()
        app.close()
        client.close()


def in_process_rate(backend: str, redis_url: str, observer: Observer, ops: int) -> float:
    with open_backend(backend, redis_url) as storage:
        engine = engine_over(storage, max_memory_nodes=1_000_000, observer=observer)
        engine.store("warm-up", tenant="bench")
        run = drive(lambda i: engine.store(f"memory {i}", tenant="bench"), ops,
                    IN_PROCESS_CALLERS)
        assert engine.stats("bench").consistent
        return run.rate


def alternate(rounds: int, measure: Callable[[bool], float]) -> tuple[float, float]:
    """Median of `measure(True)` and of `measure(False)`, taken alternately, each
    first in every other round (so neither always runs on a warmer machine)."""
    taken: dict[bool, list[float]] = {True: [], False: []}
    for round_number in range(rounds):
        for metered in ((False, True) if round_number % 2 == 0 else (True, False)):
            taken[metered].append(measure(metered))
    return median(taken[True]), median(taken[False])


def report(label: str, on: float, off: float) -> None:
    print(f"{label:<28} on {on:>8,.0f}/s   off {off:>8,.0f}/s   on/off {on / off:.3f}",
          flush=True)


def cost_arguments(description: str | None) -> argparse.Namespace:
    """The options every cost benchmark takes: rounds, peak-run tasks, in-process ops."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds (each measures every configuration once)")
    parser.add_argument("--tasks", type=int, default=2000, help="store tasks per peak run")
    parser.add_argument("--ops", type=int, default=5000, help="in-process stores per run")
    return parser.parse_args()


def main() -> None:
    args = cost_arguments(__doc__)
    with tempfile.TemporaryDirectory() as folder, redis_server() as server:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        ensure_multiprocess(Path(folder))
        prometheus = PrometheusObserver()
        for backend in BACKENDS:
            on, off = alternate(args.rounds, lambda metered, b=backend: in_process_rate(
                b, server.url, prometheus if metered else NO_OBSERVER, args.ops))
            report(f"in process, {backend}", on, off)
        with tempfile.TemporaryDirectory() as workdir:
            on, off = alternate(args.rounds, lambda metered: task_peak(
                server.url, Path(workdir), args.tasks,
                METRICS_PORT=str(free_port() if metered else 0)))
        report("store task peak, worker", on, off)


if __name__ == "__main__":
    main()
