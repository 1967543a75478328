"""A Redis rebuild with directory pages of several sizes, paired in one process.

    python -m benchmarks.redis_pages [--nodes 100000] [--rounds 6] [--pages 1000 4096]

One store is loaded as `benchmarks.rebuild` loads it; then each round runs, in turns
first and last, a rebuild with each page size (`storage.redis.SCAN_COUNT`, read on each
listing) and the raw scan-and-decode of the memory records, each timed by wall and by
CPU (this process plus the server's). Every run reads the same store in the same
process, one after another, so a machine shared with other jobs moves them alike: the
alternating runs of `benchmarks.rebuild` against another tree cannot resolve a change
of a tenth, this can.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from benchmarks.common import engine_over, median, open_backend, redis_server
from benchmarks.rebuild import LOCK_TTL_S, cpu_clock, load, raw_scan, tenant_names
from spiral_tasks.storage import redis as redis_storage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--pages", type=int, nargs="+", default=[1000, 4096])
    args = parser.parse_args()
    kept = redis_storage.SCAN_COUNT
    with redis_server() as server, open_backend("redis", server.url) as storage:
        load(storage, args.nodes)
        tenants = tenant_names(args.nodes)
        raw, cpu = raw_scan(storage), cpu_clock(storage)

        def rebuild_with(page: int) -> Callable[[], object]:
            def run() -> object:
                redis_storage.SCAN_COUNT = page
                try:
                    report = engine_over(storage, ttl_s=LOCK_TTL_S).rebuild_stats()
                finally:
                    redis_storage.SCAN_COUNT = kept
                assert report.clean
                assert report.total_nodes == args.nodes
                return report
            return run

        runs: dict[str, Callable[[], object]] = {
            str(page): rebuild_with(page) for page in args.pages}
        runs["raw"] = lambda: raw(tenants)
        wall: dict[str, list[float]] = {name: [] for name in runs}
        spent: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                started, cpu_started = time.perf_counter(), cpu()
                runs[name]()
                wall[name].append(time.perf_counter() - started)
                spent[name].append(cpu() - cpu_started)
        for name in names[:-1]:
            by_wall = [r / b for r, b in zip(wall["raw"], wall[name], strict=True)]
            by_cpu = [r / b for r, b in zip(spent["raw"], spent[name], strict=True)]
            print(f"page {name:>6}: rebuild/raw median {median(by_wall):.3f} "
                  f"({min(by_wall):.2f}-{max(by_wall):.2f}), by CPU {median(by_cpu):.3f} "
                  f"({min(by_cpu):.2f}-{max(by_cpu):.2f}); rebuild CPU s median "
                  f"{median(spent[name]):.3f}", flush=True)
        print(f"raw CPU s median {median(spent['raw']):.3f}", flush=True)


if __name__ == "__main__":
    main()
