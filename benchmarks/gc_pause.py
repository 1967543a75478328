"""GC pause distribution against its time budget, per backend.

    python3 -m uv run --frozen python -m benchmarks.gc_pause [--memories N] [--rounds N]

A tenant is filled with memories that are all eligible (retention set to 1 ms), then
`gc(budget)` runs repeatedly until the queue is empty; each call's wall time is a
pause. Runs idle and with a thread storing into the same tenant meanwhile, so GC also
waits for the lock. Pauses over budget + 2 ms are counted. The load average is
printed with each line: other processes take the cores GC needs, and tails show it.
"""

from __future__ import annotations

import os
import threading
import time

from benchmarks.common import (
    Run,
    backend_arguments,
    drive,
    engine_over,
    open_backend,
    redis_server,
)
from spiral_tasks.keys import TenantKeys


def pauses(backend: str, url: str, memories: int, budget_ms: float,
           contended: bool) -> tuple[Run, list[float]]:
    """One round: its pauses (wall time of each call) and the CPU time each call
    spent on its own thread."""
    with open_backend(backend, url) as storage:
        engine = engine_over(storage, retention_s=0.001, max_memory_nodes=memories * 2,
                             max_memory_spirals=89)
        # Filled from several callers, whose stores combine: the round's setup, not
        # what it measures.
        drive(lambda i: engine.store(f"memory {i}", depth="surface" if i % 2 else "shallow",
                                     tenant="gc"), memories, callers=8)
        time.sleep(0.01)
        stop = threading.Event()

        def writer() -> None:
            i = 0
            while not stop.is_set():
                engine.store(f"late {i}", depth="core", tenant="gc")
                i += 1

        background = threading.Thread(target=writer)
        if contended:
            background.start()
        samples: list[float] = []
        cpu: list[float] = []
        collected = 0
        started = time.perf_counter()
        while True:
            # The whole call: what a caller waits, the run's closing writes included.
            called, worked = time.perf_counter(), time.thread_time()
            report = engine.gc(budget_ms, tenant="gc")
            samples.append((time.perf_counter() - called) * 1000)
            cpu.append((time.thread_time() - worked) * 1000)
            collected += report.collected
            if report.complete:
                break
        elapsed = time.perf_counter() - started
        stop.set()
        if contended:
            background.join()
        # Stores made room too (inline GC) when the writer filled every spiral.
        assert storage.index_size(TenantKeys("gc").gc_queue) == 0
        assert engine.stats("gc").consistent
    return Run(collected, elapsed, samples), cpu


def main() -> None:
    parser = backend_arguments(__doc__)
    parser.add_argument("--memories", type=int, default=10_000,
                        help="eligible memories per round (at most ~12,000 fit the spirals)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budgets", type=float, nargs="+", default=[25.0, 5.0])
    args = parser.parse_args()
    # Tails move with the machine's load (other processes take the cores GC needs).
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    with redis_server() as server:
        for backend in args.backends:
            for budget in args.budgets:
                for contended in (False, True):
                    rounds = [pauses(backend, server.url, args.memories, budget, contended)
                              for _ in range(args.rounds)]
                    run = Run(sum(r.ops for r, _ in rounds), sum(r.seconds for r, _ in rounds),
                              [s for r, _ in rounds for s in r.latencies_ms])
                    # A pause's CPU time: GC's own work, without the time the thread
                    # waited for a core, the GIL or the lock.
                    cpu = Run(0, 0.0, [c for _, times in rounds for c in times])
                    over = sum(1 for s in run.latencies_ms if s > budget + 2)
                    label = "with stores" if contended else "idle"
                    print(f"{backend:<7} budget {budget:>4.0f} ms {label:<11} "
                          f"{len(run.latencies_ms):>5} runs  p50 {run.percentile(50):6.2f}  "
                          f"p95 {run.percentile(95):6.2f}  p99 {run.percentile(99):6.2f}  "
                          f"max {max(run.latencies_ms):6.2f} ms  over budget+2: {over}  "
                          f"cpu p99 {cpu.percentile(99):6.2f}  "
                          f"({run.rate:,.0f} collected/s)  "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
