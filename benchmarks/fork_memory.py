"""What a prefork worker's children hold of their own, after serving stores.

    python3 -m uv run --frozen python -m benchmarks.fork_memory [--tasks N] [--rounds R]

A forked child shares its parent's pages until it writes to them. A full garbage
collection writes to every object it walks (its bookkeeping lives in the object's
header), so a child whose first collection walks what it inherited copies those
pages, and every child then holds the whole import-time heap privately. One
`celery -A spiral_tasks worker -P prefork -c 2` node on a private redis-server serves
`--tasks` stores; then each child's `/proc/<pid>/smaps_rollup` says how much of its
memory is its own (private, copied or made since the fork) and how much it still
shares. The figures are sizes, not times: the machine's load does not move them.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import ExitStack
from pathlib import Path

import redis

from benchmarks.common import median, redis_server
from benchmarks.tasks import NODE, STARTUP_S, STORE, finished_at, store_kwargs
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import (
    child_pids,
    start_worker,
    wait_for_workers,
    worker_env,
)

FIELDS = ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Clean", "Shared_Dirty")


def rollup(pid: int) -> dict[str, float]:
    """`FIELDS` of the process, in MiB."""
    sizes = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS:
            sizes[name] = int(rest.split()[0]) / 1024
    return sizes


def children_after(tasks: int) -> list[dict[str, float]]:
    with ExitStack() as stack:
        server = stack.enter_context(redis_server())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = worker_env(server.url, SPIRAL_MAX_MEMORY_NODES="1000000")
        worker = start_worker(env, workdir, NODE, "-l", "WARNING")
        stack.callback(worker.stop)
        app = create_app(env)
        client = redis.Redis.from_url(server.url)
        wait_for_workers(app, [NODE], timeout=STARTUP_S)
        arguments = store_kwargs(1)
        finished_at(app, client, [app.send_task(STORE, kwargs=next(arguments)).id
                                  for _ in range(tasks)])
        assert worker.process is not None
        return [rollup(pid) for pid in child_pids(worker.process.pid)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    children = [c for _ in range(args.rounds) for c in children_after(args.tasks)]
    print(f"per prefork child after {args.tasks} stores, MiB, median of "
          f"{len(children)} children ({args.rounds} workers of 2)")
    for field in FIELDS:
        values = [c[field] for c in children]
        print(f"{field:<14} {median(values):8.1f}   ({min(values):.1f}-{max(values):.1f})")


if __name__ == "__main__":
    main()
