"""`spiral perf --through-celery`: the same workload end to end, through the broker and
the running workers, next to as many `spiral.noop` tasks (the yardstick: what the
broker, the result backend and Celery cost with no work at all).

One thread sends, keeping `concurrency` tasks in flight: Celery's result consumers are
not thread-safe (celery/celery#4480), so no more threads than that. A task's latency
runs from just before it is sent to the moment its answer is read back, in sending
order: a round trip as a producer sees it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from spiral_tasks.perf.inprocess import COLLECTABLE, Progress, Workload, no_progress
from spiral_tasks.perf.measure import Run

#: Seconds to wait for any one answer.
ANSWER_TIMEOUT_S = 60.0

Call = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class RemoteReport:
    workload: Workload
    run: Run
    noop: Run
    stats: dict[str, Any]
    prepared: int = 0

    @property
    def ratio(self) -> float:
        """The operation's throughput over the no-op's."""
        return self.run.rate / self.noop.rate if self.noop.rate > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.workload.operation, "through": "celery",
                "tenant": self.workload.tenant, "iterations": self.workload.iterations,
                "concurrency": self.workload.concurrency, **self.run.to_json(),
                "noop": self.noop.to_json(), "ratio_to_noop": round(self.ratio, 4),
                "prepared": self.prepared, "invariant": self.stats}


def pipelined(app: Celery, calls: Iterator[Call], count: int, in_flight: int,
              done: Callable[[], None]) -> Run:
    """Send `count` calls, `in_flight` at a time; a failed task counts as an error
    (by its exception's type); `TimeoutError` if an answer takes too long."""
    pending: deque[tuple[float, AsyncResult[Any]]] = deque()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    sent = 0
    while sent < count or pending:
        while sent < count and len(pending) < in_flight:
            name, kwargs = next(calls)
            pending.append((time.perf_counter(), app.send_task(name, kwargs=kwargs)))
            sent += 1
        at, result = pending.popleft()
        answer = result.get(timeout=ANSWER_TIMEOUT_S, interval=0.002, propagate=False)
        latencies.append((time.perf_counter() - at) * 1000)
        if result.failed():
            kind = type(answer).__name__
            errors[kind] = errors.get(kind, 0) + 1
        done()
    return Run(count, time.perf_counter() - started, latencies, errors)


def calls_for(workload: Workload, tag: str) -> Iterator[Call]:
    """The tasks of the measured phase: stores, collects of the prepared ids, GCs."""
    tenant = workload.tenant
    for i in range(workload.iterations):
        if workload.operation == "store":
            yield "spiral.store_memory", _store_kwargs(tenant, f"{tag}-s{i}", i)
        elif workload.operation == "collect":
            yield "spiral.collect_memory", {"memory_id": f"{tag}-c{i}", "tenant": tenant}
        else:
            yield "spiral.gc", {"tenant": tenant}


def _store_kwargs(tenant: str, memory_id: str, i: int) -> dict[str, Any]:
    return {"content": f"perf memory {i}", "type": "perf", "depth": COLLECTABLE[i % 3],
            "tenant": tenant, "memory_id": memory_id}


def run(app: Celery, workload: Workload, progress: Progress = no_progress) -> RemoteReport:
    """Measure `workload` through the workers, then the same number of no-ops."""
    tag = f"perf-{time.time_ns():x}"
    prepared = 0
    if workload.operation == "collect":  # the ids to collect, stored first, unmeasured
        with progress("preparing", workload.iterations) as done:
            pipelined(app, (("spiral.store_memory", _store_kwargs(workload.tenant,
                                                                  f"{tag}-c{i}", i))
                            for i in range(workload.iterations)),
                      workload.iterations, workload.concurrency, done)
        prepared = workload.iterations
    with progress(workload.operation, workload.iterations) as done:
        measured = pipelined(app, calls_for(workload, tag), workload.iterations,
                             workload.concurrency, done)
    with progress("noop", workload.iterations) as done:
        noop = pipelined(app, (("spiral.noop", {}) for _ in range(workload.iterations)),
                         workload.iterations, workload.concurrency, done)
    stats = app.send_task("spiral.stats", kwargs={"tenant": workload.tenant}).get(
        timeout=ANSWER_TIMEOUT_S, interval=0.01)
    return RemoteReport(workload, measured, noop, stats, prepared)
