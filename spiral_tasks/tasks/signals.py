"""When a worker opens and closes its engine, serves its metrics and counts retries.

A prefork worker's children must not share the parent's connections (or its LevelDB
handle), so each child opens its own engine after the fork. Pools that run tasks in
the worker's own process (threads, solo: the embedded deployment) open it before the
worker serves anything, so a second worker on a LevelDB folder another process holds
stops at once with LevelDB's message, instead of answering pings and then failing
every task it takes. A forking pool's main process opens the storage once and closes
it before the fork (children must not share its connections): a store that needs an
encryption key this worker lacks stops the worker before it serves anything too. (A
store that cannot be reached yet does not: its children retry, as they always did.)

The main process settles its heap before forking (`heap.settle`), so the children share
what it imported instead of each copying it.

The metrics endpoint starts first, in the main process, before any family exists (see
`spiral_tasks/metrics/folder.py`): a node that cannot serve it as configured (its
port taken by another node) stops with one line saying what to change.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.signals import (
    task_retry,
    worker_before_create_process,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from spiral_tasks import heap
from spiral_tasks.config import current
from spiral_tasks.errors import EncryptionKeyMissing, StorageUnavailable
from spiral_tasks.metrics import exporter
from spiral_tasks.metrics.observer import count_retry
from spiral_tasks.tasks import runtime

log = logging.getLogger(__name__)

#: Exit status of a worker that cannot open its storage, or serve its metrics.
NO_STORAGE = 1
NO_METRICS = 1
_FORKING_POOLS = ("prefork", "processes")


def forks(pool: object) -> bool:
    """Whether `pool` (a name or a pool class) runs tasks in child processes."""
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return any(kind in name for kind in _FORKING_POOLS)


_exporter: exporter.Exporter | None = None


@worker_init.connect
def _start_serving(sender: Any, **_: Any) -> None:
    global _exporter  # noqa: PLW0603 - the node's one endpoint
    try:
        _exporter = exporter.start(current().metrics)
    except exporter.MetricsUnavailable as exc:
        print(f"spiral-tasks: this worker cannot serve its metrics: {exc}", file=sys.stderr)
        raise SystemExit(NO_METRICS) from None
    try:
        if forks(sender.pool_cls):
            with suppress_unreachable():
                runtime.check_storage()
        else:
            runtime.engine()
    except StorageUnavailable as exc:
        print(f"spiral-tasks: this worker cannot open its storage: {exc}", file=sys.stderr)
        raise SystemExit(NO_STORAGE) from None


@contextmanager
def suppress_unreachable() -> Iterator[None]:
    """Let a storage that cannot be reached pass (the pool's children open their own
    later, and retry), but not one that refuses this worker's keys."""
    try:
        yield
    except EncryptionKeyMissing:
        raise
    except StorageUnavailable as exc:
        log.warning("storage not reachable at startup (the pool's children will retry): %s",
                    exc)


@worker_before_create_process.connect
def _settle_before_forking(**_: Any) -> None:
    """Settle the main process's heap before its first child is forked (see `heap`):
    a child's first full collection then walks only what it made itself. Otherwise
    that collection walked, and so wrote to, every object inherited from the parent,
    and each child held its own copy of all those pages (`benchmarks.fork_memory`)."""
    heap.settle()


@worker_process_init.connect
def _open_engine_in_the_child(**_: Any) -> None:
    runtime.engine()


@worker_process_shutdown.connect
def _close_engine(**_: Any) -> None:
    runtime.close()


@worker_shutdown.connect
def _stop_serving(**_: Any) -> None:
    global _exporter  # noqa: PLW0603
    if _exporter is not None:
        _exporter.stop()
        _exporter = None


@task_retry.connect
def _count_retry(sender: Any, reason: Any, **_: Any) -> None:
    if current().metrics.port:
        cause = getattr(reason, "exc", None) or reason
        count_retry(sender.name, type(cause).__name__)
