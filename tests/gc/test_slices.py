"""Shorter GIL slices while a GC run lasts, given back when the last run ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from spiral_tasks.gc.slices import short_slices
from spiral_tasks.observe import Observer
from spiral_tasks.storage.base import Storage
from spiral_tasks.testing.engines import engine_over
from tests.conftest import Clock

HOUR = 3600.0


@pytest.fixture(autouse=True)
def interpreter_default() -> Iterator[float]:
    """Each test starts and must end at the interpreter's own interval."""
    before = sys.getswitchinterval()
    yield before
    assert sys.getswitchinterval() == before


def test_a_block_runs_with_the_shorter_interval_and_gives_it_back(
        interpreter_default: float) -> None:
    with short_slices(0.0005):
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    assert sys.getswitchinterval() == interpreter_default


def test_zero_leaves_the_interpreter_alone(interpreter_default: float) -> None:
    with short_slices(0):
        assert sys.getswitchinterval() == interpreter_default


def test_a_longer_interval_than_the_interpreters_is_not_taken(
        interpreter_default: float) -> None:
    with short_slices(interpreter_default * 2):
        assert sys.getswitchinterval() == interpreter_default


def test_an_error_in_the_block_gives_the_interval_back(interpreter_default: float) -> None:
    with pytest.raises(RuntimeError), short_slices(0.0005):
        raise RuntimeError("a GC run failed")
    assert sys.getswitchinterval() == interpreter_default


def test_overlapping_runs_keep_it_short_until_the_last_ends(
        interpreter_default: float) -> None:
    """Two GC runs in two threads: the one ending first must not give the interval
    back under the other."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[float] = []

    def second() -> None:
        assert first_in.wait(30)
        with short_slices(0.0005):
            second_in.set()
            assert first_out.wait(30)
            seen.append(sys.getswitchinterval())

    thread = threading.Thread(target=second)
    thread.start()
    with short_slices(0.0005):
        first_in.set()
        assert second_in.wait(30)
    first_out.set()
    thread.join(30)
    assert seen == [pytest.approx(0.0005)]


class IntervalSeen(Observer):
    """The switch interval when each section of a run took its lock."""

    def __init__(self) -> None:
        self.intervals: list[float] = []

    def lock_acquired(self, tenant: str, waited_s: float) -> None:
        self.intervals.append(sys.getswitchinterval())


@pytest.mark.parametrize("configured_ms", [0.5, 0.0])
def test_a_gc_run_works_in_the_configured_slices(storage: Storage, clock: Clock,
                                                 interpreter_default: float,
                                                 configured_ms: float) -> None:
    seen = IntervalSeen()
    engine = engine_over(storage, clock=clock, observer=seen,
                         switch_interval_ms=configured_ms)
    engine.store("old", depth="surface")
    clock.advance(HOUR)
    seen.intervals.clear()
    assert engine.gc().collected == 1
    expected = configured_ms / 1000 if configured_ms else interpreter_default
    assert seen.intervals
    assert seen.intervals == [pytest.approx(expected)] * len(seen.intervals)


def test_an_interval_the_application_set_meanwhile_is_kept(
        interpreter_default: float) -> None:
    """The application sets its own interval while a run lasts (another thread, a
    library): the run's end must not put back the one it found at its start."""
    try:
        with short_slices(0.0005):
            sys.setswitchinterval(0.002)
        assert sys.getswitchinterval() == pytest.approx(0.002)
        # And a run that overlaps it gives back the application's, not the first one.
        with short_slices(0.0005):
            sys.setswitchinterval(0.003)
            with short_slices(0.0005):
                assert sys.getswitchinterval() == pytest.approx(0.0005)
        assert sys.getswitchinterval() == pytest.approx(0.003)
    finally:
        sys.setswitchinterval(interpreter_default)


def test_an_interval_below_a_microsecond_is_one(interpreter_default: float) -> None:
    """SPIRAL_GC_SWITCH_INTERVAL_MS accepts any positive number; the interpreter counts
    whole microseconds and kept 0 for less, which it then refused to be given back:
    saving and restoring the interval inside a run raised `ValueError`."""
    with short_slices(1e-9):
        assert sys.getswitchinterval() > 0
        sys.setswitchinterval(sys.getswitchinterval())


FORKED_MID_RUN = """
import os, sys, threading
from spiral_tasks.gc.slices import short_slices

default = sys.getswitchinterval()
inside, leave = threading.Event(), threading.Event()

def run():
    with short_slices(0.0005):
        inside.set()
        leave.wait(30)

thread = threading.Thread(target=run)
thread.start()
assert inside.wait(30)
pid = os.fork()
if pid == 0:
    ok = sys.getswitchinterval() == default
    with short_slices(0.0005):
        pass
    os._exit(0 if ok and sys.getswitchinterval() == default else 1)
leave.set()
thread.join(30)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, "the child kept the run's interval"
assert sys.getswitchinterval() == default
print("given back")
"""


def test_a_child_forked_while_a_run_lasts_starts_at_the_interpreters_interval() -> None:
    """The run goes on in the parent's thread, not in the child: the child inherited
    its count and its short interval, and no run of its own ever gave it back. Run in
    a child process (forking the test runner, threads and all, is not safe)."""
    done = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c",
                           textwrap.dedent(FORKED_MID_RUN)], env=dict(os.environ),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "given back"
