"""rebuild_stats() time on LevelDB and Redis at 100k and 1M nodes.

    python3 -m uv run --frozen python -m benchmarks.rebuild [--sizes 100000 1000000]

Nodes are stored through the engine (2,500 per tenant, inside the default limits),
then a fresh engine, with nothing cached, rebuilds every tenant from storage. The
store is clean, so the run measures the scan; a second run after corrupting one
counter per tenant shows the cost of repairs.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import engine_over, open_backend, redis_server
from spiral_tasks.keys import TenantKeys

PER_TENANT = 2500
DEPTHS = ["surface", "shallow", "deep", "core", "transcendent"]


def load(storage: object, nodes: int) -> float:
    engine = engine_over(storage)  # type: ignore[arg-type]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for t in range(nodes // PER_TENANT):
            tenant = f"t{t}"
            list(pool.map(lambda i, tenant=tenant: engine.store(
                f"memory {i} of {tenant}", depth=DEPTHS[i % 5], tenant=tenant),
                range(PER_TENANT)))
    return time.perf_counter() - started


def measure(backend: str, url: str, nodes: int) -> str:
    with open_backend(backend, url) as storage:
        load_s = load(storage, nodes)
        clean = engine_over(storage).rebuild_stats()
        assert clean.clean
        assert clean.total_nodes == nodes
        engine = engine_over(storage)
        for t in range(nodes // PER_TENANT):
            storage.set(TenantKeys(f"t{t}").memory_count, 0)
        repaired = engine.rebuild_stats()
        assert len(repaired.corrected_counters) == nodes // PER_TENANT
    return (f"{backend:<6} {nodes:>9,} nodes: rebuild {clean.duration_ms / 1000:6.2f} s "
            f"({nodes / clean.duration_ms * 1000:,.0f} nodes/s), with "
            f"{len(repaired.corrected_counters)} repairs {repaired.duration_ms / 1000:6.2f} s"
            f"  [loaded in {load_s:.0f} s]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", default=["level", "redis"],
                        choices=["memory", "level", "redis"])
    args = parser.parse_args()
    with redis_server() as server:
        for nodes in args.sizes:
            for backend in args.backends:
                print(measure(backend, server.url, nodes), flush=True)


if __name__ == "__main__":
    main()
