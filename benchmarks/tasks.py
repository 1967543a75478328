"""Store task against a no-op task: peak throughput and open-loop latency, same worker.

    python3 -m uv run --frozen python -m benchmarks.tasks [--rounds 3] [--tasks N]
        [--latency-tasks N] [--tenants 1,50] [--setups shipped,flower]
        [--cases shipped:1,engine0:1]

A private redis-server is the broker, result backend, store and lock service; one
`celery -A spiral_tasks worker -P prefork -c 2` node runs the tasks, configured as
deployed (metrics on, the app's settings). Each setup is measured on a fresh
redis-server and worker, for spiral.noop and spiral.store_memory (stores round robin
over `--tenants` tenants: one tenant contends for one lock):

- peak throughput: N tasks are queued while the node does not consume, then it
  consumes them; timed from the moment consuming starts to the last result written;
- latency at half the store's peak (open loop): tasks are sent at a fixed rate, whatever
  the worker does, and each one's latency runs from just before it is sent to its
  result written (`date_done`, the worker's clock on the same machine).

Completion is read from the results in Redis, not from task events, so the figures
mean the same with task events on or off. Setups:

- shipped: the worker as `workers/worker.sh` starts it, task events as the app ships
  them;
- flower: the same with Flower attached, started as `workers/flower.sh` starts it, and
  seeing the tasks (measured once Flower listed a task as succeeded);
- events: task events switched on from the start (`celery worker -E`), no Flower;
- engine0: the engine on the in-memory backend in each child, no locks: no I/O, the
  engine's Python only;
- instant: the engine answers a store at once (`benchmarks/instant_engine.py`): the
  Celery layer's own ceiling for the store/no-op ratio;
- floor: the engine's store is one round trip writing one record and one count on
  the storage Redis, nothing else (`benchmarks/floor_engine.py`): the ceiling of any
  engine that keeps its stores on Redis.
- batches: the store task consumed in batches of 16 (celery-batches, which must be
  installed: `python3 -m uv pip install --no-deps celery-batches==0.11`; not a
  dependency of the project; `benchmarks/batch_store.py`), 10 ms flush interval,
  prefetch multiplier 16 (a measurement spike, see BENCHMARKS.md);
- threads: the shipped worker with `-P threads -c 8`: every store in one process,
  combined, its cache never stale (the shape "one tenant's stores in one process"
  would give each tenant).

Rounds alternate which task goes first and rotate the setups' order; ratios are
taken within one setup's run, then their median and spread over the rounds.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from benchmarks.common import Run, cpu_seconds, redis_server
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    child_pids,
    node_name,
    start_worker,
    wait_for_workers,
    worker_env,
)
from spiral_tasks.testing.flower import Flower, running_flower
from spiral_tasks.testing.waiting import wait_until

NODE = "bench"
ROOT = Path(__file__).resolve().parent.parent
NOOP, STORE = "spiral.noop", "spiral.store_memory"
FLOWER_USER = "bench:bench-secret"
#: Seconds a worker may take to answer its first ping on a loaded machine.
STARTUP_S = 300.0
#: Seconds to wait for a batch of tasks to finish.
FINISH_S = 600.0


@dataclass(frozen=True)
class Setup:
    """How the worker runs: extra environment and `celery worker` arguments, Flower."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    worker_args: tuple[str, ...] = ()
    flower: bool = False


SETUPS = {
    "shipped": Setup("shipped"),
    "flower": Setup("flower", flower=True),
    "events": Setup("events", worker_args=("-E",)),
    "engine0": Setup("engine0", env={"SPIRAL_STORAGE": "memory",
                                     "SPIRAL_UNSAFE_UNLOCKED": "1"}),
    "instant": Setup("instant", env={"PYTHONPATH": str(ROOT)},
                     worker_args=("-I", "benchmarks.instant_engine")),
    "threads": Setup("threads", worker_args=("-P", "threads", "-c", "8")),
    "floor": Setup("floor", env={"PYTHONPATH": str(ROOT)},
                   worker_args=("-I", "benchmarks.floor_engine")),
    # Two batches in flight, one per child: each buffered request is a prefetched,
    # unacknowledged message, so the prefetch count (-c 2 times the multiplier) must
    # hold two full batches, or the buffer fills only at each flush interval.
    "batches": Setup("batches", env={"PYTHONPATH": str(ROOT)},
                     worker_args=("-I", "benchmarks.batch_store", "--prefetch-multiplier",
                                  os.environ.get("BATCH_FLUSH_EVERY", "16"))),
}


@dataclass(frozen=True)
class Figures:
    """One setup's run: both peaks, and both latency runs at the same rate."""

    noop_peak: float
    store_peak: float
    noop: Run
    store: Run
    rate: float
    #: CPU ms per task of the peak runs: the worker (main process and children),
    #: redis-server and Flower, summed.
    noop_cpu_ms: float
    store_cpu_ms: float

    @property
    def peak_ratio(self) -> float:
        return self.store_peak / self.noop_peak

    @property
    def p95_ratio(self) -> float:
        return self.store.percentile(95) / self.noop.percentile(95)

    @property
    def cpu_ratio(self) -> float:
        """No-op over store CPU per task: the peak ratio of a machine whose cores are
        the limit, unmoved by what else runs on it."""
        return self.noop_cpu_ms / self.store_cpu_ms


def store_kwargs(tenants: int) -> Iterator[dict[str, Any]]:
    """Store arguments, round robin over `tenants` tenants."""
    for i in itertools.count():
        yield {"content": f"benchmark memory {i} " + "x" * 100, "tenant": f"t{i % tenants}"}


def finished_at(app: Celery, client: redis.Redis, ids: list[str]) -> dict[str, float]:
    """Wait until every task in `ids` has its result, then when each was written."""
    backend: Any = app.backend  # the Redis backend: its keys, its decoding
    keys = [backend.get_key_for_task(i) for i in ids]

    def all_written() -> bool:
        return sum(client.exists(*keys[n:n + 1000]) for n in range(0, len(keys), 1000)
                   ) == len(keys)

    wait_until(all_written, FINISH_S, interval=0.02, message=f"{len(ids)} results")
    done: dict[str, float] = {}
    for n in range(0, len(keys), 1000):
        for task_id, raw in zip(ids[n:n + 1000], client.mget(keys[n:n + 1000]), strict=True):
            meta = backend.decode_result(raw)
            done[task_id] = datetime.fromisoformat(meta["date_done"]).timestamp()
    return done


def peak(app: Celery, client: redis.Redis, name: str, kwargs: Iterator[dict[str, Any]],
         count: int, watched: tuple[int, ...] = ()) -> tuple[float, float]:
    """Tasks a second, and CPU ms per task of the `watched` processes (and their
    children), while the node consumes `count` queued tasks."""
    destination = [node_name(NODE)]
    app.control.cancel_consumer("spiral", destination=destination, reply=True)
    ids = [app.send_task(name, kwargs=next(kwargs)).id for _ in range(count)]
    pids = [*watched, *(child for pid in watched for child in child_pids(pid))]
    cpu = sum(cpu_seconds(pid) for pid in pids)
    started = time.time()
    app.control.add_consumer("spiral", destination=destination, reply=True)
    rate = count / (max(finished_at(app, client, ids).values()) - started)
    return rate, (sum(cpu_seconds(pid) for pid in pids) - cpu) * 1000 / count


def open_loop(app: Celery, client: redis.Redis, name: str, kwargs: Iterator[dict[str, Any]],
              count: int, rate: float) -> Run:
    """`count` tasks sent at `rate` a second, on schedule whatever the worker does."""
    sent: dict[str, float] = {}
    started = time.time()
    for i in range(count):
        delay = started + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        now = time.time()
        sent[app.send_task(name, kwargs=next(kwargs)).id] = now
    done = finished_at(app, client, list(sent))
    return Run(count, max(done.values()) - started,
               [(done[i] - t) * 1000 for i, t in sent.items()])


def watched(flower: Flower, app: Celery, client: redis.Redis) -> None:
    """Until Flower lists a no-op as succeeded: it is attached and sees the tasks (with
    task events off by default, that is once it switched them on)."""

    def seen() -> bool:
        app.send_task(NOOP)  # one more each time, until events flow
        return any(task.get("state") == "SUCCESS"
                   for task in flower.api("/api/tasks").values())

    wait_until(seen, 120, interval=0.5, message="Flower to see a task succeed")


def run_setup(setup: Setup, tenants: int, tasks: int, latency_tasks: int,
              noop_first: bool) -> Figures:
    stores = store_kwargs(tenants)
    nothing: Iterator[dict[str, Any]] = itertools.repeat({})
    with ExitStack() as stack:
        server = stack.enter_context(redis_server())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = worker_env(server.url, SPIRAL_MAX_MEMORY_NODES="1000000", **setup.env)
        worker: CeleryProcess = start_worker(env, workdir, NODE, *setup.worker_args,
                                             "-l", "WARNING")
        stack.callback(worker.stop)
        app = create_app(env)
        client = redis.Redis.from_url(server.url)
        wait_for_workers(app, [NODE], timeout=STARTUP_S)
        assert server.process is not None
        processes = [worker.pid, server.process.pid]
        if setup.flower:
            flower = stack.enter_context(running_flower(env, workdir / "flower", FLOWER_USER))
            watched(flower, app, client)
            processes.append(flower.process.pid)
        # Warm up: connections, scripts, each tenant's spirals in both children.
        finished_at(app, client, [app.send_task(STORE, kwargs=next(stores)).id
                                  for _ in range(2 * tenants)]
                    + [app.send_task(NOOP).id for _ in range(20)])
        order = [(NOOP, nothing), (STORE, stores)]
        if not noop_first:
            order.reverse()
        peaks = {name: peak(app, client, name, kw, tasks, tuple(processes))
                 for name, kw in order}
        rate = peaks[STORE][0] / 2
        runs = {name: open_loop(app, client, name, kw, latency_tasks, rate)
                for name, kw in order}
    return Figures(peaks[NOOP][0], peaks[STORE][0], runs[NOOP], runs[STORE], rate,
                   peaks[NOOP][1], peaks[STORE][1])


def spread(values: list[float], digits: int = 2) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def report(label: str, figures: list[Figures]) -> None:
    """Medians and spreads over the rounds (ratios taken within each run first)."""

    def column(get: Any) -> list[float]:
        return [get(f) for f in figures]

    print(f"== {label}: {len(figures)} runs, median (min-max)")
    print(f"   peak/s      noop {spread(column(lambda f: f.noop_peak), 0)}   "
          f"store {spread(column(lambda f: f.store_peak), 0)}")
    print(f"   store/noop peak  {spread(column(lambda f: f.peak_ratio))}")
    print(f"   open loop at half the store peak ({spread(column(lambda f: f.rate), 0)}/s): "
          f"p95 ms noop {spread(column(lambda f: f.noop.percentile(95)), 3)}   "
          f"store {spread(column(lambda f: f.store.percentile(95)), 3)}")
    print(f"   p50 ms noop {spread(column(lambda f: f.noop.percentile(50)), 3)}   "
          f"store {spread(column(lambda f: f.store.percentile(50)), 3)}")
    print(f"   store/noop p95   {spread(column(lambda f: f.p95_ratio))}")
    print(f"   CPU ms per task  noop {spread(column(lambda f: f.noop_cpu_ms))}   "
          f"store {spread(column(lambda f: f.store_cpu_ms))}   "
          f"noop/store {spread(column(lambda f: f.cpu_ratio))}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per peak run")
    parser.add_argument("--latency-tasks", type=int, default=1500,
                        help="tasks per open-loop latency run")
    parser.add_argument("--tenants", default="1,50",
                        help="comma-separated: stores go round robin over this many "
                             "tenants (1: every store contends for one lock)")
    parser.add_argument("--setups", default="shipped,flower",
                        help=f"comma-separated, of {', '.join(SETUPS)}: each is measured "
                             "with each number of tenants")
    parser.add_argument("--cases", default="",
                        help="instead of --setups and --tenants: SETUP:TENANTS pairs, "
                             "comma-separated (e.g. shipped:1,flower:50,engine0:1)")
    args = parser.parse_args()
    pairs = ([tuple(case.split(":")) for case in args.cases.split(",")] if args.cases
             else [(name, tenants) for tenants in args.tenants.split(",")
                   for name in args.setups.split(",")])
    cases = [(SETUPS[name], int(tenants)) for name, tenants in pairs]
    results: dict[tuple[str, int], list[Figures]] = {}
    for round_number in range(args.rounds):
        shift = round_number % len(cases)
        for n, (setup, tenants) in enumerate(cases[shift:] + cases[:shift]):
            noop_first = (round_number + n) % 2 == 0
            figures = run_setup(setup, tenants, args.tasks, args.latency_tasks, noop_first)
            results.setdefault((setup.name, tenants), []).append(figures)
            print(f"round {round_number + 1} {setup.name}, {tenants} tenant(s), "
                  f"{'noop' if noop_first else 'store'} first: peak noop "
                  f"{figures.noop_peak:,.0f}/s store {figures.store_peak:,.0f}/s "
                  f"({figures.peak_ratio:.2f}); at {figures.rate:,.0f}/s p95 noop "
                  f"{figures.noop.percentile(95):.3f} ms store "
                  f"{figures.store.percentile(95):.3f} ms ({figures.p95_ratio:.2f}); CPU ms "
                  f"per task noop {figures.noop_cpu_ms:.2f} store {figures.store_cpu_ms:.2f} "
                  f"({figures.cpu_ratio:.2f})", flush=True)
    for (name, tenants), runs in results.items():
        report(f"{name}, {tenants} tenant(s)", runs)


if __name__ == "__main__":
    main()
