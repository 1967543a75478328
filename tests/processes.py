"""Running a function in several fresh processes at once (spawned, not forked, so
each opens its own connections like a separate program would)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def run_in_processes(target: Callable[..., None], calls: Sequence[tuple[Any, ...]],
                     timeout: float) -> None:
    """Start `target(*args)` for every args in `calls` at once; all must exit cleanly."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=args) for args in calls]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=timeout)
        assert process.exitcode == 0, f"{target.__name__} exited with {process.exitcode}"
