"""Waiting on a condition under a deadline, instead of sleeping and hoping.

A fixed sleep is either too short on a loaded machine (the test fails) or too long on
an idle one (the suite crawls). These helpers poll the condition itself and fail with a
message saying what was awaited and what was last seen, so a timeout is a diagnosis,
not a mystery. `wait_until_drained` asks the broker and the workers themselves (LLEN on
Redis, Celery's inspect API) whether all work is done, the way arq and rq tests run a
worker in burst mode and dramatiq tests `join` a queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from celery import Celery
from kombu.transport.virtual import Channel as VirtualChannel

T = TypeVar("T")

#: How much of the last value seen a timeout message shows.
_SHOWN = 500


class WaitTimeout(TimeoutError):
    """The awaited condition did not hold before the deadline."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}..."


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05,
               message: str | Callable[[], str] = "the condition",
               ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """Call `predicate` every `interval` seconds until it returns something truthy, and
    return that; after `timeout` seconds raise `WaitTimeout` naming `message` (what was
    awaited; a callable is asked at the deadline, so it can describe the state then) and
    the last value seen.

    Exceptions from `predicate` propagate (a dead listener must fail the test, not look
    like a slow one), except those in `ignoring`, which count as "not yet" (a server
    still starting refuses connections) and are reported if they were the last thing
    seen. The predicate runs at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignoring as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            awaited = message() if callable(message) else message
            raise WaitTimeout(f"waited {timeout:g} s for {awaited}; last seen: {_shown(last)}")
        time.sleep(min(interval, remaining))


@dataclass(frozen=True)
class Backlog:
    """What is left to do: messages in each queue, tasks each worker holds (active,
    reserved or scheduled), and workers that did not answer."""

    queued: dict[str, int]
    held: dict[str, list[str]] = field(default_factory=dict)
    silent: list[str] = field(default_factory=list)

    @property
    def drained(self) -> bool:
        return (not any(self.queued.values()) and not any(self.held.values())
                and not self.silent)


def routed_queues(app: Celery) -> set[str]:
    """The queue names `app` declares or routes tasks to."""
    names = set(app.amqp.queues) | {app.conf.task_default_queue}
    routes = app.conf.task_routes
    if isinstance(routes, dict):
        names |= {route["queue"] for route in routes.values()
                  if isinstance(route, dict) and "queue" in route}
    return names


def backlog(app: Celery, destination: Sequence[str] | None = None,
            timeout: float = 2.0) -> Backlog:
    """The broker's queue lengths for `app`'s queues and, per worker node (those named
    in `destination`, or whichever answer within `timeout` seconds), the tasks it is
    running, has reserved or holds for later (a retry with a countdown).

    With `destination`, each inspect call returns as soon as every named node replied.
    Without it, no reply at all counts as a silent fleet: "nobody answered" is not
    "nothing to do".
    """
    queued: dict[str, int] = {}
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        if not isinstance(channel, VirtualChannel):  # Redis, files, memory: all of ours
            raise TypeError(f"cannot count messages on {type(channel).__name__}")
        for name in sorted(routed_queues(app)):
            try:
                queued[name] = channel.queue_declare(queue=name, passive=True).message_count
            except connection.channel_errors:
                queued[name] = 0  # never declared (on Redis: no list): nothing in it
    inspector = app.control.inspect(destination=list(destination) if destination else None,
                                    timeout=timeout)
    held: dict[str, list[str]] = {}
    answered: set[str] = set()
    running = [inspector.active() or {}, inspector.reserved() or {}]
    later = {node: [entry["request"] for entry in entries]
             for node, entries in (inspector.scheduled() or {}).items()}
    for replies in (*running, later):
        for node, tasks in replies.items():
            answered.add(node)
            held.setdefault(node, []).extend(f"{t['name']}[{t['id']}]" for t in tasks)
    expected = set(destination) if destination else (answered or {"any worker"})
    return Backlog(queued, held, sorted(expected - answered))


def wait_until_drained(app: Celery, timeout: float, destination: Sequence[str] | None = None,
                       interval: float = 0.1) -> Backlog:
    """Wait until `app`'s queues are empty and no worker (of `destination`, if given)
    reports an active, reserved or scheduled task: everything sent so far is done.
    Returns the drained backlog; on timeout the message shows the last one seen."""
    seen: list[Backlog] = []

    def drained() -> bool:
        seen[:] = [backlog(app, destination)]
        return seen[0].drained

    wait_until(drained, timeout, interval,
               message=lambda: f"queues drained and workers idle ({seen[-1]})")
    return seen[-1]
