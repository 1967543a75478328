"""When a worker opens and closes its engine.

A prefork worker's children must not share the parent's connections (or its LevelDB
handle), so each child opens its own engine after the fork. Pools that run tasks in
the worker's own process (threads, solo: the embedded deployment) open it before the
worker serves anything, so a second worker on a LevelDB folder another process holds
stops at once with LevelDB's message, instead of answering pings and then failing
every task it takes. A forking pool's main process opens the storage once and closes
it before the fork (children must not share its connections): a store that needs an
encryption key this worker lacks stops the worker before it serves anything too. (A
store that cannot be reached yet does not: its children retry, as they always did.)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from spiral_tasks.errors import EncryptionKeyMissing, StorageUnavailable
from spiral_tasks.tasks import runtime

log = logging.getLogger(__name__)

#: Exit status of a worker that cannot open its storage.
NO_STORAGE = 1
_FORKING_POOLS = ("prefork", "processes")


def forks(pool: object) -> bool:
    """Whether `pool` (a name or a pool class) runs tasks in child processes."""
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return any(kind in name for kind in _FORKING_POOLS)


@worker_init.connect
def _open_engine_before_serving(sender: Any, **_: Any) -> None:
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


@worker_process_init.connect
def _open_engine_in_the_child(**_: Any) -> None:
    runtime.engine()


@worker_process_shutdown.connect
def _close_engine(**_: Any) -> None:
    runtime.close()
