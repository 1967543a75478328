"""GC pause distribution against its time budget, per backend.

    python3 -m uv run --frozen python -m benchmarks.gc_pause [--memories N] [--rounds N]

A tenant is filled with memories that are all eligible (retention set to 1 ms), then
`gc(budget)` runs repeatedly until it has collected as many memories as the fill (idle:
until the queue is empty), for at most `--seconds`; each call's wall time is a pause.
Pauses over budget + 2 ms are counted. The load average is printed with each line:
other processes take the cores GC needs, and tails show it.

"With stores" runs a writer storing into the same tenant for the whole measurement, so
GC also waits for the tenant's lock, as deployed:

- Redis: the writer is another process (its own engine over the same server). Deployed,
  GC is a Celery task in its own prefork child and stores run in other children or
  other nodes: they share the tenant's lock and the server with GC, not its GIL. A
  writer thread in GC's process would add a GIL wait no deployment has.
- LevelDB and memory: the writer is a thread in GC's process, storing through GC's
  engine. One process owns a LevelDB folder (and a memory backend is one process's
  dict), so deployed the stores and GC run in the same process, share its GIL and its
  one engine (`tasks/runtime.py`): the thread is what happens. (A writer with an engine
  of its own left GC's cache of the tenant stale at every run, so each run reloaded
  all 89 spirals: 2-4 ms of a 5 ms budget no deployment spends.)

The writer's memories are surface memories, eligible at once like the fill (so GC
collects them too, and the tenant never fills: a writer of core memories was refused
with `CapacityExceeded` once the spirals were full, and stopped); a refusal is counted
and the writer goes on. Its stores per second are printed. Each pause's CPU time on
GC's thread is printed too: wall time less CPU time is what GC waited for (a core, the
GIL, the lock, Redis).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    Run,
    backend_arguments,
    drive,
    engine_over,
    open_backend,
    redis_server,
)
from spiral_tasks import heap
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import CapacityExceeded
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.redis import RedisStorage

TENANT = "gc"


def settings(memories: int) -> dict[str, Any]:
    """The engine settings of a round, the same in GC's engine and a writer's."""
    return {"retention_s": 0.001, "max_memory_nodes": memories * 2, "max_memory_spirals": 89}


def store_until(engine: SpiralMemory, stop: Callable[[], bool]) -> tuple[int, int]:
    """Store surface memories into the tenant until `stop()`: (stored, refused)."""
    stored = refused = 0
    while not stop():
        try:
            engine.store(f"late {stored + refused}", depth="surface", tenant=TENANT)
            stored += 1
        except CapacityExceeded:
            refused += 1
    return stored, refused


def redis_writer(url: str, memories: int, started: Any, stop: Any, answers: Any) -> None:
    """The writer process for Redis (spawned: nothing inherited from GC's process)."""
    storage = RedisStorage(url)
    storage.init()
    try:
        started.set()
        answers.put(store_until(engine_over(storage, **settings(memories)), stop.is_set))
    finally:
        storage.close()


class Writer:
    """Stores running during a round: a thread, or for Redis a process (see above)."""

    def __init__(self, backend: str, url: str, engine: SpiralMemory, memories: int) -> None:
        self.answer = (0, 0)
        if backend == "redis":
            context = multiprocessing.get_context("spawn")
            self.stop: Any = context.Event()
            started, self.answers = context.Event(), context.Queue()
            self.process: Any = context.Process(
                target=redis_writer, args=(url, memories, started, self.stop, self.answers))
            self.process.start()
            if not started.wait(timeout=120):
                raise RuntimeError("the writer process did not start")
        else:
            self.stop = threading.Event()
            self.process = None

            def run() -> None:
                self.answer = store_until(engine, self.stop.is_set)
            self.thread = threading.Thread(target=run)
            self.thread.start()
        self.started = time.perf_counter()

    def finish(self) -> tuple[int, int, float]:
        """Stop it: (stored, refused, seconds it ran)."""
        self.stop.set()
        seconds = time.perf_counter() - self.started
        if self.process is not None:
            self.answer = self.answers.get(timeout=120)
            self.process.join(timeout=60)
        else:
            self.thread.join()
        return (*self.answer, seconds)


def pauses(backend: str, url: str, memories: int, budget_ms: float, contended: bool,
           seconds: float) -> tuple[Run, list[float], tuple[int, int, float]]:
    """One round: its pauses (wall time of each call), the CPU time each call spent on
    its own thread, and the writer's (stored, refused, seconds). At most `seconds` of
    calls: where a store makes room itself (a full tenant), the writer collects too,
    and GC alone may take long to reach the fill's count."""
    heap.settle()  # as `open_engine` does before a process's first engine
    with open_backend(backend, url) as storage:
        engine = engine_over(storage, **settings(memories))
        # Filled from several callers, whose stores combine: the round's setup, not
        # what it measures.
        drive(lambda i: engine.store(f"memory {i}", depth="surface" if i % 2 else "shallow",
                                     tenant=TENANT), memories, callers=8)
        time.sleep(0.01)
        writer = Writer(backend, url, engine, memories) if contended else None
        samples: list[float] = []
        cpu: list[float] = []
        collected = 0
        started = time.perf_counter()
        while collected < memories and time.perf_counter() - started < seconds:
            # The whole call: what a caller waits, the run's closing writes included.
            called, worked = time.perf_counter(), time.thread_time()
            report = engine.gc(budget_ms, tenant=TENANT)
            samples.append((time.perf_counter() - called) * 1000)
            cpu.append((time.thread_time() - worked) * 1000)
            collected += report.collected
            if report.complete:
                break
        elapsed = time.perf_counter() - started
        wrote = writer.finish() if writer else (0, 0, 0.0)
        # The writer's last memories, unmeasured.
        while not engine.gc(1000, tenant=TENANT).complete:
            pass
        assert storage.index_size(TenantKeys(TENANT).gc_queue) == 0
        assert engine.stats(TENANT).consistent
    return Run(collected, elapsed, samples), cpu, wrote


def main() -> None:
    parser = backend_arguments(__doc__)
    parser.add_argument("--memories", type=int, default=10_000,
                        help="eligible memories per round (at most ~12,000 fit the spirals)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="the longest a round calls GC for")
    parser.add_argument("--budgets", type=float, nargs="+", default=[25.0, 5.0])
    args = parser.parse_args()
    # Tails move with the machine's load (other processes take the cores GC needs).
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    with redis_server() as server:
        for backend in args.backends:
            for budget in args.budgets:
                for contended in (False, True):
                    rounds = [pauses(backend, server.url, args.memories, budget, contended,
                                     args.seconds)
                              for _ in range(args.rounds)]
                    run = Run(sum(r.ops for r, _, _ in rounds),
                              sum(r.seconds for r, _, _ in rounds),
                              [s for r, _, _ in rounds for s in r.latencies_ms])
                    # A pause's CPU time: GC's own work, without the time the thread
                    # waited for a core, the GIL, the lock or Redis.
                    cpu = Run(0, 0.0, [c for _, times, _ in rounds for c in times])
                    waited = 1 - sum(cpu.latencies_ms) / sum(run.latencies_ms)
                    over = sum(1 for s in run.latencies_ms if s > budget + 2)
                    stored = sum(w[0] for _, _, w in rounds)
                    refused = sum(w[1] for _, _, w in rounds)
                    seconds = sum(w[2] for _, _, w in rounds) or 1.0
                    label = "with stores" if contended else "idle"
                    writes = (f"  writer {stored / seconds:,.0f} stores/s ({refused} refused)"
                              if contended else "")
                    print(f"{backend:<7} budget {budget:>4.0f} ms {label:<11} "
                          f"{len(run.latencies_ms):>5} runs  p50 {run.percentile(50):6.2f}  "
                          f"p95 {run.percentile(95):6.2f}  p99 {run.percentile(99):6.2f}  "
                          f"max {max(run.latencies_ms):6.2f} ms  over budget+2: {over}  "
                          f"cpu p99 {cpu.percentile(99):6.2f}  waited {waited:.0%}  "
                          f"({run.rate:,.0f} collected/s){writes}  "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
