"""spiral-enqueue: send work to running workers and print what they answer.

Talks to whatever deployment the environment names: the embedded default (no
REDIS_URL: the filesystem broker under SPIRAL_EMBEDDED_DIR) or Redis (REDIS_URL).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from celery.exceptions import TimeoutError as CeleryTimeout


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="spiral-enqueue",
        description="Enqueue spiral.store_memory tasks (or one maintenance task) to the "
                    "running workers and print each result as a JSON line. Needs a "
                    "running worker: see the README.")
    parser.add_argument("contents", nargs="*",
                        help="memories to store (default: --count generated ones)")
    parser.add_argument("--count", type=int, default=10,
                        help="memories to generate when none are given (default: 10)")
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--depth", default="shallow",
                        help="surface, shallow, deep, core or transcendent")
    parser.add_argument("--type", default="general", help="memory type label")
    parser.add_argument("--stats", action="store_true",
                        help="afterwards, ask a worker for the tenant's stats")
    parser.add_argument("--gc", action="store_true", help="afterwards, run spiral.gc")
    parser.add_argument("--rebuild", action="store_true",
                        help="afterwards, run spiral.rebuild_stats")
    parser.add_argument("--timeout", type=float, default=30,
                        help="seconds to wait for each answer (default: 30)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from spiral_tasks.tasks.app import app  # noqa: PLC0415 - --help needs no broker

    contents = args.contents or [f"memory {i} at {time.time():.3f}" for i in range(args.count)]
    stores = [("spiral.store_memory", {"content": c, "tenant": args.tenant,
                                       "depth": args.depth, "type": args.type})
              for c in contents]
    maintenance = [(name, {"tenant": args.tenant}) for name, wanted in (
        ("spiral.gc", args.gc), ("spiral.rebuild_stats", args.rebuild),
        ("spiral.stats", args.stats)) if wanted]
    failed = 0
    # Stores go out together; each maintenance task only after everything before it
    # was answered, so stats and rebuild see the stores.
    for batch in [stores, *([call] for call in maintenance)]:
        pending = [(name, app.send_task(name, kwargs=kwargs)) for name, kwargs in batch]
        for name, result in pending:
            try:
                answer = result.get(timeout=args.timeout, interval=0.05)
                print(json.dumps({"task": name, "result": answer}), flush=True)
            except CeleryTimeout:
                print(f"spiral-enqueue: no answer to {name} within {args.timeout:g} s: is "
                      "a worker running?", file=sys.stderr)
                return 2
            except Exception as exc:  # the task's own error, rebuilt from its result
                failed += 1
                print(json.dumps({"task": name, "error": f"{type(exc).__name__}: {exc}"}),
                      flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
