"""spiral-demo: a workload against the configured storage (LevelDB by default).

Runs what a deployment runs, in one process: the startup rebuild, a burst of stores
(with associations, across depths), retrievals, collects, a budgeted GC, and prints
the statistics and the closing rebuild report.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from spiral_tasks.cli import render
from spiral_tasks.config import current
from spiral_tasks.errors import SpiralError
from spiral_tasks.factory import open_engine
from spiral_tasks.model import Depth


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="spiral-demo",
        description="Store, retrieve, collect and garbage-collect memories against the "
                    "configured storage, then print stats and a rebuild report. Storage "
                    "comes from the environment: SPIRAL_DB_PATH (LevelDB, the default, "
                    "./spiraldb), or REDIS_URL for Redis.")
    parser.add_argument("--count", type=int, default=500,
                        help="memories to store (default: 500)")
    parser.add_argument("--tenant", default="demo", help="tenant to work in (default: demo)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    parser.add_argument("--verbose", action="store_true", help="list every spiral and counter")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    settings = current()
    where = settings.redis_url if settings.storage.value == "redis" else settings.db_path
    print(f"spiral-demo: {settings.storage.value} storage at {where}")
    engine = open_engine(settings)
    try:
        print(render.rebuild_report(engine.rebuild_stats(), args.verbose))
        rng = random.Random(args.seed)
        depths = [d.value for d in Depth]
        stored: list[str] = []
        started = time.perf_counter()
        for i in range(args.count):
            links = rng.sample(stored, min(len(stored), rng.randint(0, 2)))
            result = engine.store(f"memory {i}: {rng.random():.6f}", type="demo",
                                  depth=rng.choice(depths), associations=links,
                                  tenant=args.tenant)
            stored.append(result.id)
            if (i + 1) % max(1, args.count // 10) == 0:
                print(f"  stored {i + 1}/{args.count}", flush=True)
        elapsed = time.perf_counter() - started
        print(f"stored {args.count} memories in {elapsed:.2f} s "
              f"({args.count / elapsed:,.0f}/s)" if elapsed else "")
        for memory_id in rng.sample(stored, min(20, len(stored))):
            engine.retrieve(memory_id, tenant=args.tenant)
        collected = sum(engine.collect(m, tenant=args.tenant)
                        for m in rng.sample(stored, len(stored) // 10))
        print(f"collected {collected} memories by id")
        print(render.gc_report(engine.gc(tenant=args.tenant)))
        print(render.stats(engine.stats(args.tenant)))
        print(render.rebuild_report(engine.rebuild_stats(), args.verbose))
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (SpiralError, ValueError) as exc:
        print(f"spiral-demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
