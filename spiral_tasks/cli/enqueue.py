"""spiral-enqueue: send work to running workers and print what they answer.

Talks to whatever deployment the environment names: the embedded default (no
REDIS_URL: the broker under SPIRAL_EMBEDDED_DIR) or Redis (REDIS_URL).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import click
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from spiral_tasks.cli.connect import Unreachable, check_broker, workers
from spiral_tasks.cli.options import (
    COUNT,
    DEPTH,
    EXIT_CODES_HELP,
    LABEL,
    SECONDS,
    TENANT,
    Exit,
)
from spiral_tasks.errors import ConfigError


@dataclass(frozen=True)
class Call:
    task: str
    kwargs: dict[str, Any]


def planned_calls(contents: tuple[str, ...], count: int, tenant: str, depth: str,
                  kind: str, maintenance: dict[str, bool]) -> list[list[Call]]:
    """The stores (sent together), then each maintenance task on its own, in order:
    stats and rebuild must see the stores before them."""
    texts = list(contents) or [f"memory {i} at {time.time():.3f}" for i in range(count)]
    stores = [Call("spiral.store_memory", {"content": c, "tenant": tenant, "depth": depth,
                                           "type": kind}) for c in texts]
    after = [[Call(name, {"tenant": tenant})] for name, wanted in maintenance.items()
             if wanted]
    return [stores, *after] if stores else after


@click.command(name="spiral-enqueue", epilog=EXIT_CODES_HELP,
               short_help="Send stores and maintenance tasks to running workers.")
@click.argument("contents", nargs=-1)
@click.option("--count", type=COUNT, default=10, show_default=True,
              help="Memories to generate when no CONTENTS are given.")
@click.option("--tenant", type=TENANT, default="default", show_default=True)
@click.option("--depth", type=DEPTH, default="shallow", show_default=True)
@click.option("--type", "kind", type=LABEL, default="general", show_default=True,
              help="The memories' type label.")
@click.option("--stats", is_flag=True, help="Afterwards, ask a worker for the tenant's stats.")
@click.option("--gc", is_flag=True, help="Afterwards, run spiral.gc on the tenant.")
@click.option("--rebuild", is_flag=True, help="Afterwards, run spiral.rebuild_stats.")
@click.option("--timeout", type=SECONDS, default=30.0, show_default=True,
              help="Seconds to wait for each answer.")
def command(contents: tuple[str, ...], count: int, tenant: str, depth: str, kind: str,
            stats: bool, gc: bool, rebuild: bool, timeout: float) -> None:
    """Enqueue spiral.store_memory tasks (CONTENTS, or --count generated ones), then
    the maintenance tasks asked for, and print each answer as a JSON line.

    Needs a running worker (workers/embedded.sh, or `celery -A spiral_tasks worker`
    with REDIS_URL set). Without one, the tasks stay queued for the next worker.
    """
    calls = planned_calls(contents, count, tenant, depth, kind,
                          {"spiral.gc": gc, "spiral.rebuild_stats": rebuild,
                           "spiral.stats": stats})
    try:
        from spiral_tasks.tasks.app import app  # noqa: PLC0415 - --help needs no broker
    except ConfigError as exc:
        click.echo(f"spiral-enqueue: {exc}", err=True)
        sys.exit(Exit.USAGE)
    sys.exit(run(app, calls, timeout))


def run(app: Celery, batches: list[list[Call]], timeout: float) -> int:
    try:
        check_broker(app)
    except Unreachable as exc:
        click.echo(f"spiral-enqueue: {exc}", err=True)
        return Exit.FAILED
    if not workers(app):
        total = sum(len(b) for b in batches)
        click.echo(f"spiral-enqueue: no worker answered; sending {total} task(s) anyway: "
                   "they stay queued for the next worker that starts (workers/embedded.sh, "
                   f"or celery -A spiral_tasks worker). Waiting up to {timeout:g} s for "
                   "each answer...", err=True)
    failed = 0
    for batch in batches:
        batch_failed = send_and_print(app, batch, timeout)
        if batch_failed is None:
            return Exit.NO_ANSWER
        failed += batch_failed
    return Exit.FAILED if failed else Exit.OK


def send_and_print(app: Celery, batch: list[Call], timeout: float) -> int | None:
    """Send `batch`, print each answer; the number that failed, or None when one did not
    answer in time."""
    pending = [(call.task, app.send_task(call.task, kwargs=call.kwargs)) for call in batch]
    try:
        return print_answers(pending, timeout)
    finally:
        # The backend keeps every result it was sent until told otherwise: left to the
        # exit, Celery's Redis backend unsubscribes from a dying interpreter and prints
        # a traceback after our message.
        forget = getattr(app.backend, "remove_pending_result", None)
        if forget is not None:
            for _, result in pending:
                forget(result)


def print_answers(pending: list[tuple[str, AsyncResult[Any]]], timeout: float) -> int | None:
    failed = 0
    for name, result in pending:
        try:
            answer = result.get(timeout=timeout, interval=0.05)
        except CeleryTimeout:
            click.echo(f"spiral-enqueue: no answer to {name} within {timeout:g} s; "
                       "it stays queued for a worker", err=True)
            return None
        except Exception as exc:  # the task's own error, rebuilt from its result
            failed += 1
            click.echo(json.dumps({"task": name, "error": f"{type(exc).__name__}: {exc}"}))
            continue
        click.echo(json.dumps({"task": name, "result": answer}))
    return failed


def main(argv: list[str] | None = None) -> None:
    command.main(args=argv, prog_name="spiral-enqueue")


if __name__ == "__main__":
    main()
