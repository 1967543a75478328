"""Waiting for a condition under a deadline: how tests synchronize, never by sleeping.

A fixed sleep is a guess about how fast the machine is; on a loaded machine the guess
is wrong and the test fails (or, worse, passes without testing anything). Waiting on
the condition itself takes as long as it takes, up to a deadline that says clearly
what never happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.01,
               message: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy, and return that; raise
    `TimeoutError` naming `message` (and the last value seen) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:g} s for {message}; last saw {value!r}")
        time.sleep(interval)
