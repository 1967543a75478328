"""Helpers for tests and benchmarks that need real servers (like celery.contrib.testing).

`wait_until` and `wait_until_drained` are here so a test or benchmark waits on the
condition it needs, under a deadline, instead of sleeping.
"""

from spiral_tasks.testing.waiting import (
    Backlog,
    WaitTimeout,
    backlog,
    wait_until,
    wait_until_drained,
)

__all__ = ["Backlog", "WaitTimeout", "backlog", "wait_until", "wait_until_drained"]
