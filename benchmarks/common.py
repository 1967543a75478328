"""Shared pieces of the benchmark scripts: backends, concurrent drivers, percentiles."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.testing.engines import engine_over
from spiral_tasks.testing.redis_server import RedisServer

BACKENDS = ("memory", "level", "redis")
__all__ = ["BACKENDS", "Run", "drive", "engine_over", "median", "open_backend", "redis_server"]


@dataclass(frozen=True)
class Run:
    ops: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> str:
        return (f"{self.rate:>10,.0f} ops/s   p50 {self.percentile(50):6.3f} ms   "
                f"p95 {self.percentile(95):6.3f} ms   p99 {self.percentile(99):6.3f} ms")


def drive(operation: Callable[[int], object], ops: int, callers: int) -> Run:
    """Run `operation(i)` for i in range(ops) from `callers` threads in closed loops."""
    latencies: list[float] = []
    counter = iter(range(ops))
    lock = threading.Lock()

    def caller() -> None:
        mine: list[float] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            start = time.perf_counter()
            operation(i)
            mine.append((time.perf_counter() - start) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Run(ops, time.perf_counter() - started, latencies)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for one benchmark, so it can flush freely."""
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def open_backend(name: str, redis_url: str | None = None) -> Iterator[Storage]:
    """A fresh, empty backend: LevelDB in a temporary folder, Redis flushed."""
    with tempfile.TemporaryDirectory() as workdir:
        storage = open_storage(name, db_path=Path(workdir) / "db", redis_url=redis_url)
        if isinstance(storage, RedisStorage):
            storage.client.flushall()
        try:
            yield storage
        finally:
            storage.close()


def median(values: list[float]) -> float:
    return statistics.median(values)
