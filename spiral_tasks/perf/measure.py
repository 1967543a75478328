"""Closed-loop drivers and what they measure: latencies, throughput, errors.

Shared by `spiral perf` and the scripts under benchmarks/, so a figure printed by one
means what the same figure printed by the other means.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Run:
    ops: int
    seconds: float
    latencies_ms: list[float]
    #: Operations that raised, by exception type (counted in `ops`, timed too).
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> str:
        return (f"{self.rate:>10,.0f} ops/s   p50 {self.percentile(50):6.3f} ms   "
                f"p95 {self.percentile(95):6.3f} ms   p99 {self.percentile(99):6.3f} ms")

    def to_json(self) -> dict[str, Any]:
        return {"ops": self.ops, "seconds": round(self.seconds, 6),
                "ops_per_s": round(self.rate, 1),
                "p50_ms": round(self.percentile(50), 3),
                "p95_ms": round(self.percentile(95), 3),
                "p99_ms": round(self.percentile(99), 3),
                "errors": dict(self.errors)}


def drive(operation: Callable[[int], object], ops: int, callers: int,
          on_done: Callable[[], None] | None = None, *, catch: bool = False,
          stop: threading.Event | None = None) -> Run:
    """Run `operation(i)` for i in range(ops) from `callers` threads in closed loops
    (at most `ops`: callers take no more once `stop` is set).

    `catch`: an operation that raises is counted by its exception's type and the run
    goes on (a perf run reports its error rate); otherwise the error ends that caller.
    `on_done` is called after each operation (a progress bar).
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(ops))
    lock = threading.Lock()

    def caller() -> None:
        mine: list[float] = []
        failed: dict[str, int] = {}
        try:
            while True:
                with lock:
                    i = None if stop is not None and stop.is_set() else next(counter, None)
                if i is None:
                    break
                start = time.perf_counter()
                try:
                    operation(i)
                except Exception as exc:
                    if not catch:
                        raise
                    failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
                mine.append((time.perf_counter() - start) * 1000)
                if on_done is not None:
                    on_done()
        finally:
            with lock:
                latencies.extend(mine)
                for kind, n in failed.items():
                    errors[kind] = errors.get(kind, 0) + n

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Run(len(latencies), time.perf_counter() - started, latencies, errors)
