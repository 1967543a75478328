"""In-process store throughput and latency per backend, and cost as the store grows.

    python3 -m uv run --frozen python -m benchmarks.store [--ops N] [--grow N]

Part 1: `--ops` stores into one tenant (limits raised so nothing is evicted) from 1, 8
and 50 concurrent callers (threads sharing one engine), per backend: throughput and
p50/p95/p99 latency. Part 2: `--grow` stores spread over 40 tenants (2,500 each, inside
the default limits), timed per tenth, to show the cost per store stays flat.
"""

from __future__ import annotations

import time

from benchmarks.common import (
    backend_arguments,
    drive,
    engine_over,
    open_backend,
    redis_server,
)

DEPTHS = ["surface", "shallow", "deep", "core", "transcendent"]


def concurrency(backend: str, url: str, ops: int, callers: int) -> str:
    with open_backend(backend, url) as storage:
        engine = engine_over(storage, max_memory_nodes=1_000_000)
        engine.store("warm-up", tenant="bench")
        run = drive(lambda i: engine.store(f"memory {i}", depth=DEPTHS[i % 5],
                                           tenant="bench"), ops, callers)
        assert engine.stats("bench").consistent
    return f"{backend:<7} callers={callers:<3} {run.summary()}"


def growth(backend: str, url: str, total: int) -> str:
    with open_backend(backend, url) as storage:
        engine = engine_over(storage)
        tenth = total // 10
        chunks = []
        started = time.perf_counter()
        for chunk in range(10):
            t0 = time.perf_counter()
            for i in range(chunk * tenth, (chunk + 1) * tenth):
                engine.store(f"memory {i}", depth=DEPTHS[i % 5], tenant=f"t{i % 40}")
            chunks.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    per_store = " ".join(f"{c / tenth * 1e6:.0f}" for c in chunks)
    return (f"{backend:<7} {total:,} stores in {elapsed:.1f} s; us/store per tenth: "
            f"{per_store}; last/first tenth {chunks[-1] / chunks[0]:.2f}")


def main() -> None:
    parser = backend_arguments(__doc__)
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--grow", type=int, default=100_000)
    args = parser.parse_args()
    with redis_server() as server:
        print("store throughput and latency (one tenant)")
        for backend in args.backends:
            for callers in (1, 8, 50):
                print(concurrency(backend, server.url, args.ops, callers), flush=True)
        print("cost as the store grows (40 tenants)")
        for backend in args.backends:
            print(growth(backend, server.url, args.grow), flush=True)


if __name__ == "__main__":
    main()
