"""`spiral perf store` next to `benchmarks.store`'s figures, measured in one run.

    python3 -m uv run --frozen python -m benchmarks.perf_cli [--ops N]

For each backend and 1, 8 and 50 callers, alternately: `benchmarks.store`'s
measurement (N stores into one tenant from threads sharing one engine in this
process, a fresh store), then `spiral perf store --json` as its own process against a
fresh store of the same backend, with PERF_ITERATIONS=N and PERF_CONCURRENCY=callers
(and SPIRAL_MAX_MEMORY_NODES raised as `benchmarks.store` raises it, so neither
evicts). What differs: the command opens the engine as a deployment does
(`open_engine`, settings from the environment), stores at the three collectable
depths only, and reports the lock wait share.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import backend_arguments, redis_server
from benchmarks.store import concurrency
from spiral_tasks.testing.celery_worker import worker_env

CALLERS = (1, 8, 50)
SPIRAL = Path(sys.executable).parent / "spiral"


def perf_store(backend: str, url: str, ops: int, callers: int) -> dict[str, Any]:
    """`spiral perf store --json` on a fresh store of `backend`."""
    with tempfile.TemporaryDirectory() as workdir:
        env = worker_env(url if backend == "redis" else None, PERF_ITERATIONS=str(ops),
                         PERF_CONCURRENCY=str(callers), SPIRAL_MAX_MEMORY_NODES="1000000",
                         SPIRAL_DB_PATH=str(Path(workdir) / "db"))
        if backend != "redis":
            env["SPIRAL_STORAGE"] = backend
        else:
            redis.Redis.from_url(url).flushall()
        done = subprocess.run([str(SPIRAL), "perf", "store", "--json"], env=env, cwd=workdir,
                              capture_output=True, text=True, check=True, timeout=600)
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def main() -> None:
    parser = backend_arguments(__doc__)
    parser.add_argument("--ops", type=int, default=10_000)
    args = parser.parse_args()
    with redis_server() as server:
        for backend in args.backends:
            for callers in CALLERS:
                print("benchmarks.store   ", concurrency(backend, server.url, args.ops,
                                                         callers), flush=True)
                report = perf_store(backend, server.url, args.ops, callers)
                print(f"spiral perf store   {backend:<7} callers={callers:<3} "
                      f"{report['ops_per_s']:>10,.0f} ops/s   p50 {report['p50_ms']:6.3f} ms"
                      f"   p95 {report['p95_ms']:6.3f} ms   p99 {report['p99_ms']:6.3f} ms"
                      f"   lock wait {report['lock_wait_share']:.1%}   invariant "
                      f"{'holds' if report['invariant']['consistent'] else 'BROKEN'}",
                      flush=True)


if __name__ == "__main__":
    main()
