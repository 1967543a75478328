"""Running a function in several fresh processes at once (spawned, not forked, so
each opens its own connections like a separate program would)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_in_processes(target: Callable[..., None], calls: Sequence[tuple[Any, ...]],
                     timeout: float) -> None:
    """Start `target(*args)` for every args in `calls` at once; all must exit cleanly
    within `timeout` seconds in all (one deadline, not one per process). Any still
    running then is killed, so a hung producer fails the test instead of outliving it."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=args) for args in calls]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    hung = [p.pid for p in processes if p.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    assert not hung, f"{target.__name__} still running after {timeout:g} s: pids {hung}"
    failed = {p.pid: p.exitcode for p in processes if p.exitcode != 0}
    assert not failed, f"{target.__name__} exited with {failed}"
