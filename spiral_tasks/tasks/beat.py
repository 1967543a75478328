"""Beat's scheduler in the Redis deployment: celery-redbeat, with a lock that is sure to
outlive beat's sleep.

celery-redbeat lets one of several beats schedule: the one holding a Redis lock. The
active beat extends the lock each time it wakes and then sleeps up to its next due
task or its max interval; a standby polls for the lock every max interval. If the
lock expires during a sleep, the active beat dies at its next extension
(`LockNotOwnedError`) and, once the standby has taken over, so does the standby: no
beat is left. Whether the lock holds depends on the max interval beat really runs
with, which `celery beat --max-interval` can set behind the configuration's back, so
the check is made here, where that interval is known, not only in the settings.

A beat can still outlive its lock without sleeping too long: stopped (a paused VM, a
SIGSTOP) or starved by a loaded machine for longer than the lock's lifetime. Then, if
no other beat took the lock meanwhile, it takes the lock back and goes on: with the
lock free nobody else scheduled, so nothing was sent twice, and dying would leave no
beat at all where it was the only one (a loaded test machine showed exactly that: the
only beat of a deployment died at its next extension, and GC stopped). If another beat
holds the lock, this one stops at once, as before.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery
from celery.utils.log import get_logger
from redbeat import RedBeatScheduler  # type: ignore[import-untyped]
from redis.exceptions import LockNotOwnedError

from spiral_tasks.config.settings import beat_lock_problem
from spiral_tasks.errors import ConfigError

#: Exit status of a beat refused for a lock that cannot hold (as for a bad setting).
REFUSED = 2

log = get_logger("celery.beat")


class SpiralBeatScheduler(RedBeatScheduler):  # type: ignore[misc]
    """celery-redbeat's scheduler that refuses to start with a lock shorter than its
    sleep, and extends the lock by its exact (possibly fractional) timeout.

    The lock timeout is celery-redbeat's: `redbeat_lock_timeout`
    (SPIRAL_BEAT_LOCK_TIMEOUT_S) when configured, else 5 x `self.max_interval`, the
    max interval beat runs with (SPIRAL_BEAT_MAX_INTERVAL_S, or `--max-interval`).
    """

    # Set by celery-redbeat (untyped); declared for the type checker.
    lock_key: str | None
    lock_timeout: float
    max_interval: float

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        configured = app.conf.beat_max_loop_interval
        source = ("SPIRAL_BEAT_MAX_INTERVAL_S" if self.max_interval == configured
                  else "beat's --max-interval")
        problem = beat_lock_problem(self.lock_timeout, self.max_interval, source)
        if problem:
            refuse(f"SPIRAL_BEAT_LOCK_TIMEOUT_S='{self.lock_timeout:g}': {problem}")

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Extend the lock to its exact timeout, then schedule as celery-redbeat does.

        celery-redbeat's own tick extends by `int(lock_timeout)`, which cuts a
        fractional timeout (2.5 s would live 2 s); its extension is skipped here by
        hiding the lock key for the length of the call.
        """
        lock_key = self.lock_key
        if lock_key:
            self.keep_lock()
        self.lock_key = None
        try:
            interval: float = super().tick(*args, **kwargs)
        finally:
            self.lock_key = lock_key
        return interval

    def keep_lock(self) -> None:
        """Extend the lock for its whole timeout; if it expired meanwhile and is free,
        take it again (see the module's docstring). Raises `LockNotOwnedError` when
        another beat holds it."""
        try:
            self.lock.extend(self.lock_timeout)
        except LockNotOwnedError:
            if not self.lock.acquire(blocking=False):
                log.error("beat: the lock expired while this beat was stalled, and "
                          "another beat holds it now: this one stops")
                raise
            log.warning("beat: the lock expired while this beat was stalled (longer "
                        "than its %gs lifetime) and no other beat had taken it: taken "
                        "back", self.lock_timeout)


def refuse(problem: str) -> None:
    """Stop beat before it takes the lock, with one line saying why (a traceback from
    inside Celery would bury it)."""
    print(f"spiral-tasks: {ConfigError([problem])}", file=sys.stderr)
    raise SystemExit(REFUSED)
