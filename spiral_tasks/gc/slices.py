"""Shorter GIL slices while a GC run lasts.

A GC run promises a pause within its budget, but in a process where other threads
store (the embedded worker's thread pool, LevelDB and the in-memory backend), the run
shares the GIL with them. CPython hands the GIL over every switch interval (5 ms by
default): each time the run's thread waits for it, after its lock wait or a LevelDB
write, a storing thread may keep it for a whole interval, so a 5 ms budget can be
overrun by 5 ms at every handover. While a run lasts the interval is shortened, so a
handover costs at most that much; the interval found is back when the last run in the
process ends (unless the application set its own meanwhile: that one stays). Other
threads run in shorter slices meanwhile, which costs a few more switches, never
correctness.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Shortened:
    """The process's one count of runs that asked for short slices, and the interval
    to give back when the last one ends (several GC runs may overlap in threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs = 0
        self.restore = 0.0
        #: The interval the runs left in force: found otherwise, someone else (the
        #: application, a library) set theirs meanwhile, and theirs is the one to keep.
        self.ours = 0.0


_SHORTENED = _Shortened()


def _after_fork_in_child() -> None:
    """A child forked while a run lasted in another thread inherits the count of that
    run, which never ends in the child: its interval stayed short for good (and its
    lock, if held at the fork, stayed held). The child starts with no run."""
    state = _SHORTENED
    if state.runs and sys.getswitchinterval() == state.ours:
        sys.setswitchinterval(state.restore)
    state.lock = threading.Lock()
    state.runs = 0


os.register_at_fork(after_in_child=_after_fork_in_child)


#: The shortest interval the interpreter keeps (it counts whole microseconds): asked
#: for less, it stored 0, which `sys.getswitchinterval` then reported and which
#: `sys.setswitchinterval` refuses, so code that saves and puts back the interval
#: (a library, a test) failed with `ValueError` while a run lasted.
SHORTEST_S = 1e-6


@contextmanager
def short_slices(interval_s: float) -> Iterator[None]:
    """Run the block with the switch interval at most `interval_s` (0: unchanged), and
    at least `SHORTEST_S`."""
    if interval_s <= 0:
        yield
        return
    interval_s = max(interval_s, SHORTEST_S)
    state = _SHORTENED
    with state.lock:
        found = sys.getswitchinterval()
        if state.runs == 0 or found != state.ours:
            state.restore = found
        state.runs += 1
        if interval_s < found:
            sys.setswitchinterval(interval_s)
        state.ours = sys.getswitchinterval()
    try:
        yield
    finally:
        with state.lock:
            state.runs -= 1
            if state.runs == 0 and sys.getswitchinterval() == state.ours:
                sys.setswitchinterval(state.restore)


__all__ = ["short_slices"]
