"""Redis commands per task, store against no-op, through a real worker.

    python3 -m uv run --frozen python -m benchmarks.task_commands [--tasks N]
        [--tenants 1 50] [--concurrency 2]

Wall-clock figures on this machine move 2-3x from day to day; how many commands a task
sends does not. One `celery -A spiral_tasks worker -P prefork -c 2` node (as
`benchmarks.tasks` starts it) consumes `--tasks` queued tasks; Redis's own
`INFO commandstats` is read before and after, so the counts are what the server ran
(commands inside a Lua script included), per task. The line to read first is
`evalsha`: the no-op's is Celery's own, and every further one per store is a round
trip of the store path (one: an optimistic commit; two: lock and snapshot, then
commit). Two children storing into one tenant keep each other's cache stale, so they
take the locked way; `--concurrency 1` shows one child alone.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import redis_server
from benchmarks.tasks import NODE, NOOP, STARTUP_S, STORE, finished_at, store_kwargs
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import (
    node_name,
    start_worker,
    wait_for_workers,
    worker_env,
)

#: Commands sent less often than this per task are left out of the table.
SHOWN_FROM = 0.05


def calls(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stat["calls"]
            for name, stat in client.info("commandstats").items()}


def per_task(name: str, tenants: int, tasks: int, concurrency: int) -> dict[str, float]:
    """Commands per task while one node consumes `tasks` queued `name` tasks."""
    with ExitStack() as stack:
        server = stack.enter_context(redis_server())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = worker_env(server.url, SPIRAL_MAX_MEMORY_NODES="1000000")
        worker = start_worker(env, workdir, NODE, "-c", str(concurrency), "-l", "WARNING")
        stack.callback(worker.stop)
        app = create_app(env)
        client = redis.Redis.from_url(server.url)
        wait_for_workers(app, [NODE], timeout=STARTUP_S)
        arguments: Iterator[dict[str, Any]] = (store_kwargs(tenants) if name == STORE
                                               else itertools.repeat({}))
        # Warm up: connections, scripts loaded, each tenant's state in both children.
        finished_at(app, client, [app.send_task(name, kwargs=next(arguments)).id
                                  for _ in range(2 * tenants + 20)])
        destination = [node_name(NODE)]
        app.control.cancel_consumer("spiral", destination=destination, reply=True)
        ids = [app.send_task(name, kwargs=next(arguments)).id for _ in range(tasks)]
        before = calls(client)
        app.control.add_consumer("spiral", destination=destination, reply=True)
        finished_at(app, client, ids)
        after = calls(client)
    # The queue's own: the sends happened before `before`, the reads of results after.
    return {command: (count - before.get(command, 0)) / tasks
            for command, count in after.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--tenants", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    columns = [("noop", per_task(NOOP, 1, args.tasks, args.concurrency))]
    columns += [(f"store, {t} tenant(s)", per_task(STORE, t, args.tasks, args.concurrency))
                for t in args.tenants]
    commands = sorted({c for _, counts in columns for c, n in counts.items()
                       if n >= SHOWN_FROM},
                      key=lambda c: -max(counts.get(c, 0.0) for _, counts in columns))
    print(f"Redis commands per task, {args.tasks} tasks, prefork -c {args.concurrency}")
    print(f"{'command':<16}" + "".join(f"{label:>22}" for label, _ in columns))
    for command in commands:
        print(f"{command:<16}" + "".join(f"{counts.get(command, 0.0):>22.2f}"
                                         for _, counts in columns))
    print(f"{'all':<16}" + "".join(f"{sum(counts.values()):>22.2f}" for _, counts in columns))


if __name__ == "__main__":
    main()
