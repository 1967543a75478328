"""`spiral perf --through-celery`: the same workload end to end, through the broker and
the running workers, next to as many `spiral.noop` tasks (the yardstick: what the
broker, the result backend and Celery cost with no work at all).

Two comparisons, each a ratio of the operation to the no-op in one run:

- throughput: one thread sends, keeping `concurrency` tasks in flight (closed loop;
  Celery's result consumers are not thread-safe, celery/celery#4480, so no more
  threads than that): the operation's rate over the no-op's;
- p95 latency at half the operation's throughput: tasks sent on a fixed schedule
  (open loop: a slow answer does not hold the next send back), the no-op first, then
  the operation, at the same rate: the operation's p95 over the no-op's.

A task's latency runs from just before it is sent to the moment its answer is read
back, in sending order: a round trip as a producer sees it (the producer's clock only,
so a producer on another host measures the same).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from spiral_tasks.perf.inprocess import COLLECTABLE, Progress, Workload, no_progress
from spiral_tasks.perf.measure import Run

#: Seconds to wait for any one answer.
ANSWER_TIMEOUT_S = 60.0
#: The shortest wait for an answer between two paced sends.
MIN_WAIT_S = 0.001

Call = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class RemoteReport:
    workload: Workload
    run: Run
    noop: Run
    stats: dict[str, Any]
    prepared: int = 0
    #: The open-loop runs at half the operation's throughput (`rate` a second).
    paced: Run | None = None
    noop_paced: Run | None = None
    rate: float = 0.0

    @property
    def ratio(self) -> float:
        """The operation's throughput over the no-op's."""
        return self.run.rate / self.noop.rate if self.noop.rate > 0 else 0.0

    @property
    def p95_ratio(self) -> float:
        """The operation's p95 over the no-op's, both sent at `rate`."""
        if self.paced is None or self.noop_paced is None:
            return 0.0
        noop_p95 = self.noop_paced.percentile(95)
        return self.paced.percentile(95) / noop_p95 if noop_p95 > 0 else 0.0

    @property
    def errors(self) -> int:
        return sum(r.error_count for r in (self.run, self.paced) if r is not None)

    def to_json(self) -> dict[str, Any]:
        paced: dict[str, Any] = {}
        if self.paced is not None and self.noop_paced is not None:
            paced = {"at_half_throughput": {
                "rate_per_s": round(self.rate, 1), **self.paced.to_json(),
                "noop": self.noop_paced.to_json(),
                "p95_ratio_to_noop": round(self.p95_ratio, 4)}}
        return {"operation": self.workload.operation, "through": "celery",
                "tenant": self.workload.tenant, "iterations": self.workload.iterations,
                "concurrency": self.workload.concurrency, **self.run.to_json(),
                "noop": self.noop.to_json(), "ratio_to_noop": round(self.ratio, 4),
                **paced, "prepared": self.prepared, "invariant": self.stats}


class Answers:
    """Latencies and failures of answered tasks, by exception type for a failed one."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def read(self, at: float, result: AsyncResult[Any], timeout: float) -> None:
        """Wait up to `timeout` for `result` (sent at `at`): Celery's TimeoutError if
        it is not there by then."""
        answer = result.get(timeout=timeout, interval=0.002, propagate=False)
        self.latencies.append((time.perf_counter() - at) * 1000)
        if result.failed():
            kind = type(answer).__name__
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def run(self, count: int, started: float) -> Run:
        return Run(count, time.perf_counter() - started, self.latencies, self.errors)


def pipelined(app: Celery, calls: Iterator[Call], count: int, in_flight: int,
              done: Callable[[], None]) -> Run:
    """Send `count` calls, `in_flight` at a time; a failed task counts as an error
    (by its exception's type); `TimeoutError` if an answer takes too long."""
    pending: deque[tuple[float, AsyncResult[Any]]] = deque()
    answers = Answers()
    started = time.perf_counter()
    sent = 0
    while sent < count or pending:
        while sent < count and len(pending) < in_flight:
            name, kwargs = next(calls)
            pending.append((time.perf_counter(), app.send_task(name, kwargs=kwargs)))
            sent += 1
        answers.read(*pending.popleft(), ANSWER_TIMEOUT_S)
        done()
    return answers.run(count, started)


def paced(app: Celery, calls: Iterator[Call], count: int, rate: float,
          done: Callable[[], None]) -> Run:
    """Send `count` calls at `rate` a second on schedule (open loop), reading answers
    in sending order while waiting for the next send."""
    pending: deque[tuple[float, AsyncResult[Any]]] = deque()
    answers = Answers()
    started = time.perf_counter()
    sent = 0
    while sent < count or pending:
        due = started + sent / rate
        now = time.perf_counter()
        if sent < count and now >= due:
            name, kwargs = next(calls)
            pending.append((now, app.send_task(name, kwargs=kwargs)))
            sent += 1
        elif not pending:
            time.sleep(due - now)
        elif sent == count:
            answers.read(*pending.popleft(), ANSWER_TIMEOUT_S)
            done()
        else:
            with contextlib.suppress(CeleryTimeout):  # not yet: send the next first
                answers.read(*pending[0], max(MIN_WAIT_S, due - now))
                pending.popleft()
                done()
    return answers.run(count, started)


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
    """Measure `workload` through the workers, then the same number of no-ops (closed
    loop); then both again, no-ops first, at half the operation's throughput (open)."""
    tag = f"perf-{time.time_ns():x}"
    prepared = 0
    if workload.operation == "collect":  # the ids to collect, stored first, unmeasured
        prepared = 2 * workload.iterations
        with progress("preparing", prepared) as done:
            pipelined(app, (("spiral.store_memory", _store_kwargs(workload.tenant,
                                                                  f"{phase}-c{i}", i))
                            for phase in (tag, f"{tag}-p")
                            for i in range(workload.iterations)),
                      prepared, workload.concurrency, done)
    with progress(workload.operation, workload.iterations) as done:
        measured = pipelined(app, calls_for(workload, tag), workload.iterations,
                             workload.concurrency, done)
    with progress("noop", workload.iterations) as done:
        noop = pipelined(app, _noops(), workload.iterations, workload.concurrency, done)
    rate = measured.rate / 2
    with progress(f"noop at {rate:,.0f}/s", workload.iterations) as done:
        noop_paced = paced(app, _noops(), workload.iterations, rate, done)
    with progress(f"{workload.operation} at {rate:,.0f}/s", workload.iterations) as done:
        measured_paced = paced(app, calls_for(workload, f"{tag}-p"), workload.iterations,
                               rate, done)
    stats = app.send_task("spiral.stats", kwargs={"tenant": workload.tenant}).get(
        timeout=ANSWER_TIMEOUT_S, interval=0.01)
    return RemoteReport(workload, measured, noop, stats, prepared, measured_paced,
                        noop_paced, rate)


def _noops() -> Iterator[Call]:
    while True:
        yield "spiral.noop", {}
