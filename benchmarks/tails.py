"""Fair tails in process: p99 against p50 with many callers on one tenant, per backend.

    python3 -m uv run --frozen python -m benchmarks.tails [--ops N] [--rounds N]
        [--callers N] [--backends memory level redis] [--batches 16 0]

Each round stores `--ops` memories into one tenant from `--callers` threads sharing
one engine (their stores combined, `combining.py`), and from one caller as the noise
floor (no queue at all: its p99/p50 is what the machine alone adds). Printed per
backend: the median over the rounds of stores/s, p50, p99 and p99/p50 (spread), and a measure
no stall of the machine can move: how many stores completed while each store waited
(with N callers and every caller waiting for every other once, about N), its p50,
p99 and p99/p50. A ratio of that count above 1 is the combiner's own unfairness.
Last, the p99 (and max) of how many batches were served after a store's own before its
caller got back: the callers a batch answered must still be scheduled, and any batch
cut before they are runs ahead of their next stores (0 when they always go first).
`--batches` compares bounds on a combined batch (0: unbounded, as before issue 10) in
the same run, alternating, each first in turns.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable

from benchmarks.common import (
    Run,
    backend_arguments,
    drive,
    engine_over,
    open_backend,
    redis_server,
)
from spiral_tasks import heap
from spiral_tasks.combining import Combiner
from spiral_tasks.engine import STORE_BATCH
from spiral_tasks.store import StorePending


def counted(store: Callable[[int], object]) -> tuple[Callable[[int], None], list[int]]:
    """`store` wrapped to note, per call, how many calls completed while it ran."""
    completed = itertools.count(1)
    latest = [0]
    waited: list[int] = []

    def call(i: int) -> None:
        before = latest[0]
        store(i)
        latest[0] = next(completed)
        waited.append(latest[0] - before)

    return call, waited


class Lag:
    """A combiner's `serve` that numbers its batches, so that a caller back from a store
    can tell how many batches were served after its own before it got back."""

    def __init__(self, serve: Callable[[str, list[StorePending]], None]) -> None:
        self._serve = serve
        self._batch_of: dict[str, int] = {}
        self._started = itertools.count(1)
        self._finished = 0
        self.lags: list[int] = []

    def serve(self, tenant: str, batch: list[StorePending]) -> None:
        number = next(self._started)
        for pending in batch:
            self._batch_of[pending.payload.content] = number
        self._serve(tenant, batch)
        self._finished = number

    def returned(self, content: str) -> None:
        self.lags.append(max(0, self._finished - self._batch_of.pop(content)))


def percentile(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def one_round(backend: str, url: str, ops: int, callers: int,
              batch: int) -> tuple[Run, Run, list[int], list[int]]:
    heap.settle()  # as `open_engine` does before a process's first engine
    with open_backend(backend, url) as storage:
        engine = engine_over(storage, max_memory_nodes=10_000_000)
        lag = Lag(engine._store_batch)
        engine.store_combiner = Combiner(lag.serve, batch or None)
        engine.store("warm-up", tenant="bench")
        alone = drive(lambda i: engine.store(f"alone {i}", tenant="bench"), ops // 4, 1)

        def store(i: int) -> None:
            engine.store(f"memory {i}", tenant="bench")
            lag.returned(f"memory {i}")

        call, waited = counted(store)
        crowd = drive(call, ops, callers)
        assert engine.stats("bench").consistent
    return alone, crowd, waited, lag.lags


def ratio_cell(ratios: list[float]) -> str:
    ordered = sorted(ratios)
    return f"{statistics.median(ordered):6.2f} ({ordered[0]:.2f}-{ordered[-1]:.2f})"


def main() -> None:
    parser = backend_arguments(__doc__)
    parser.add_argument("--ops", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", default=[STORE_BATCH])
    args = parser.parse_args()
    found: dict[tuple[str, int], list[tuple[Run, Run, list[int], list[int]]]] = {}
    with redis_server() as server:
        for round_ in range(args.rounds):
            for backend in args.backends:
                batches = args.batches if round_ % 2 == 0 else args.batches[::-1]
                for batch in batches:
                    found.setdefault((backend, batch), []).append(
                        one_round(backend, server.url, args.ops, args.callers, batch))
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    print(f"median of {args.rounds} rounds; {args.callers} callers, {args.ops} stores each")
    print(f"{'backend':<8}{'batch':>6}{'1 caller p99/p50':>24}{'stores/s':>9}{'p50 ms':>8}"
          f"{'p99 ms':>8}{'p99/p50':>22}{'completed while waiting p50 p99 p99/p50':>48}"
          f"{'batches after its own p99 (max)':>34}")
    for (backend, batch), rounds in found.items():
        floor = ratio_cell([a.percentile(99) / a.percentile(50) for a, _, _, _ in rounds])
        rate = statistics.median(c.rate for _, c, _, _ in rounds)
        p50 = statistics.median(c.percentile(50) for _, c, _, _ in rounds)
        p99 = statistics.median(c.percentile(99) for _, c, _, _ in rounds)
        tails = ratio_cell([c.percentile(99) / c.percentile(50) for _, c, _, _ in rounds])
        waits = [(percentile(w, 50), percentile(w, 99)) for _, _, w, _ in rounds]
        count = ratio_cell([hi / lo for lo, hi in waits])
        lags = statistics.median(percentile(lag, 99) for _, _, _, lag in rounds)
        worst = max(max(lag) for _, _, _, lag in rounds)
        print(f"{backend:<8}{batch or '-':>6}{floor:>24}{rate:>9,.0f}{p50:>8.2f}"
              f"{p99:>8.2f}{tails:>22}"
              f"{statistics.median(lo for lo, _ in waits):>14.0f}"
              f"{statistics.median(hi for _, hi in waits):>6.0f}{count:>28}"
              f"{lags:>28.0f} ({worst})")


if __name__ == "__main__":
    main()
