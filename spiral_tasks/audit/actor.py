"""Who is acting: the task id and the worker an audit entry names.

The engine must not import Celery, so the task layer says who it is through a context
variable (set around each task's run by `SpiralTask`), and the CLI says it is itself.
A store combined into another thread's batch carries the actor it was asked under
(`StoreRequest.actor`), so its entry names its own task, not the batch leader's.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple


class Actor(NamedTuple):
    """Who asked: the task's id and its worker (None: no task, or not known). A named
    tuple rather than a frozen dataclass: a commit groups its audit events by actor,
    and a tuple hashes in C where the dataclass's `__hash__` was a Python call per
    store."""

    task: str | None
    worker: str | None


@functools.cache
def _process_actor(pid: int) -> Actor:
    return Actor(task=None, worker=f"{socket.gethostname()}:{pid}")


def process_actor() -> Actor:
    """An actor with no task: this process (a CLI, a script), named host:pid (by pid,
    so a forked child names itself)."""
    return _process_actor(os.getpid())


_CURRENT: ContextVar[Actor | None] = ContextVar("spiral_audit_actor", default=None)


#: `process_actor()` as this process found it first (empty until then): every store
#: asks for its actor, and `os.getpid` with the cache lookup was about 2k instructions
#: of it. Emptied in a forked child, which names itself.
_this_process: list[Actor] = []
os.register_at_fork(after_in_child=_this_process.clear)


def current() -> Actor:
    """The actor set around the running task, else this process."""
    actor = _CURRENT.get()
    if actor is not None:
        return actor
    if not _this_process:
        _this_process.append(process_actor())
    return _this_process[0]


@contextmanager
def acting(actor: Actor) -> Iterator[None]:
    """Name `actor` in every audit entry written inside the block."""
    token = _CURRENT.set(actor)
    try:
        yield
    finally:
        _CURRENT.reset(token)
