"""`spiral perf` in process: the runbook's `perf:store` (and collect, gc) through the
engine, against the configured backend, from `PERF_CONCURRENCY` threads.

Each run works in one tenant (`perf` unless told otherwise) and leaves what it stored
there: it measures the deployment's own storage, so point it at a tenant no producer
uses. Memories are stored at collectable depths, so repeated runs fill the tenant and
then evict, never refuse. A GC run first stores its memories through an engine whose
retention is a millisecond, so each is due at once and every GC call has work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

from spiral_tasks.config import Settings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.perf.locks import LockWaits
from spiral_tasks.perf.measure import Run, drive
from spiral_tasks.results import TenantStats

OPERATIONS = ("store", "collect", "gc")
#: Depths a run stores at: every one collectable, so a full tenant evicts, not refuses.
COLLECTABLE = ("surface", "shallow", "deep")
GC_RETENTION_S = 0.001

#: A phase of a run, for a progress display: `progress(label, length)` gives a context
#: whose value is called once per operation done (from any thread).
Progress = Callable[[str, int], AbstractContextManager[Callable[[], None]]]


@contextmanager
def no_progress(label: str, length: int) -> Iterator[Callable[[], None]]:
    yield lambda: None


@dataclass(frozen=True)
class Workload:
    operation: str
    tenant: str
    iterations: int
    concurrency: int


@dataclass(frozen=True)
class PerfReport:
    workload: Workload
    backend: str
    run: Run
    waits: LockWaits
    stats: TenantStats
    #: Memories stored first, unmeasured (collect, gc).
    prepared: int = 0
    #: GC: memories collected, and the budget each call had.
    collected: int | None = None
    budget_ms: float | None = None

    @property
    def lock_share(self) -> float:
        return self.waits.share(sum(self.run.latencies_ms) / 1000)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "operation": self.workload.operation, "backend": self.backend,
            "tenant": self.workload.tenant, "iterations": self.workload.iterations,
            "concurrency": self.workload.concurrency, **self.run.to_json(),
            "lock_wait_s": round(self.waits.waited_s, 6),
            "lock_wait_share": round(self.lock_share, 6),
            "lock_timeouts": self.waits.timed_out, "locks_lost": self.waits.lost,
            "prepared": self.prepared, "invariant": self.stats.to_json()}
        if self.collected is not None:
            data.update(collected=self.collected, time_budget_ms=self.budget_ms)
        return data


def engine_settings(settings: Settings, operation: str) -> Settings:
    """The settings a run's engine gets: the configured ones, with GC's retention cut
    to a millisecond for a GC run (see the module's doc)."""
    if operation != "gc":
        return settings
    return replace(settings, gc=replace(settings.gc, retention_s=GC_RETENTION_S))


def run(engine: SpiralMemory, waits: LockWaits, workload: Workload,
        progress: Progress = no_progress) -> PerfReport:
    """Measure `workload` through `engine`, whose observer is `waits`."""
    prepared: list[str] = []
    if workload.operation in ("collect", "gc"):
        with progress("preparing", workload.iterations) as done:
            prepared = _store(engine, workload, done)
    waits.reset()
    collected = None
    with progress(f"{workload.operation}", workload.iterations) as done:
        if workload.operation == "store":
            measured = drive(lambda i: _store_one(engine, workload.tenant, i),
                             workload.iterations, workload.concurrency, done, catch=True)
        elif workload.operation == "collect":
            measured = drive(lambda i: engine.collect(prepared[i], workload.tenant),
                             len(prepared), workload.concurrency, done, catch=True)
        else:
            measured, collected = _gc(engine, workload, done)
    return PerfReport(workload, engine.storage.name, measured, waits,
                      engine.stats(workload.tenant), len(prepared), collected,
                      engine.context.gc.time_budget_ms if collected is not None else None)


def _store_one(engine: SpiralMemory, tenant: str, i: int) -> str:
    return engine.store(f"perf memory {i}", type="perf", depth=COLLECTABLE[i % 3],
                        tenant=tenant).id


def _store(engine: SpiralMemory, workload: Workload, done: Callable[[], None]) -> list[str]:
    ids: list[str] = []
    guard = threading.Lock()

    def store(i: int) -> None:
        memory_id = _store_one(engine, workload.tenant, i)
        with guard:
            ids.append(memory_id)

    drive(store, workload.iterations, workload.concurrency, done)
    return ids


#: At most this many GC calls per prepared memory before `spiral perf gc` gives up.
GC_CALLS_PER_MEMORY = 10


def _gc(engine: SpiralMemory, workload: Workload,
        done: Callable[[], None]) -> tuple[Run, int]:
    """GC calls from every caller until one finds nothing left to collect; each call
    is one pause. A run collects what fits its budget, which on a busy machine (or
    with the other callers holding the lock) can be one memory or none: the calls
    are bounded generously, the stop is what ends them."""
    finished = threading.Event()
    guard = threading.Lock()
    collected = 0

    def collect(_: int) -> None:
        nonlocal collected
        report = engine.gc(tenant=workload.tenant)
        with guard:
            collected += report.collected
        for _ in range(report.collected):
            done()
        if report.collected == 0 and report.complete:
            finished.set()

    measured = drive(collect, GC_CALLS_PER_MEMORY * workload.iterations
                     + workload.concurrency, workload.concurrency, catch=True, stop=finished)
    return measured, collected
