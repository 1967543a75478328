"""A settled heap: the first engine of a process freezes what outlives the work, and a
full collection afterwards no longer walks it. Run in child processes: freezing the
test runner's own heap would change every test after this one."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest

from spiral_tasks.storage.memory import MemoryStorage
from spiral_tasks.testing.engines import engine_over

SCRIPT = """
import gc, os, sys
from spiral_tasks import heap, open_engine

tracked = len(gc.get_objects())
engine = open_engine()
engine.store("one", tenant="t")
frozen = gc.get_freeze_count()
assert frozen >= tracked // 2, (frozen, tracked)
assert len(gc.get_objects()) < frozen // 10, (len(gc.get_objects()), frozen)

# Once per process: a second engine freezes nothing more.
engine.close()
open_engine().close()
assert not heap.settle()
assert gc.get_freeze_count() <= frozen  # frozen objects freed by refcount leave it

# The work's own cyclic garbage still goes.
class Node:
    pass
for _ in range(100):
    a, b = Node(), Node()
    a.other, b.other = b, a
del a, b
assert gc.collect() >= 200

# A forked child settles its own.
pid = os.fork()
if pid == 0:
    os._exit(0 if heap.settle() else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print("settled", frozen)
"""


@pytest.mark.parametrize("backend", ["memory", "level"])
def test_the_first_engine_settles_the_heap_once(tmp_path: Path, backend: str) -> None:
    env = {**os.environ, "SPIRAL_STORAGE": backend, "SPIRAL_DB_PATH": str(tmp_path / "db")}
    env.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("settled ")


DROPPED = """
import gc, weakref
from spiral_tasks import open_engine

engine = open_engine()
engine.store("one", tenant="t")
first = weakref.ref(engine)
del engine  # dropped without close(), as an application may
gc.collect()
assert first() is None, "the first engine was frozen with the heap and never freed"
# Its LevelDB handle went with it: the same database opens again in this process.
open_engine().store("two", tenant="t")
print("freed")
"""


@pytest.mark.parametrize("backend", ["memory", "level"])
def test_the_first_engine_is_not_frozen_with_the_heap(tmp_path: Path, backend: str) -> None:
    """Settling freezes what is alive at that moment, for good: settled after the first
    engine was built, that engine (its cycles, its cache, its LevelDB handle and lock
    file) was never freed once dropped, and the database could not be opened again in
    the process (`StorageHeld`)."""
    env = {**os.environ, "SPIRAL_STORAGE": backend, "SPIRAL_DB_PATH": str(tmp_path / "db")}
    env.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(DROPPED)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "freed"


FORKING_SCRIPT = """
import gc, os
from celery.signals import worker_before_create_process
import spiral_tasks.tasks.signals  # the worker's handlers, as `-A spiral_tasks` loads them

worker_before_create_process.send(sender=None)
frozen = gc.get_freeze_count()
assert frozen > 10_000, frozen
pid = os.fork()
if pid == 0:
    # What the child's first full collection walks: what it made, not what it inherited.
    os._exit(0 if len(gc.get_objects()) < frozen // 10 else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print("shared", frozen)
"""


def test_a_prefork_worker_settles_before_it_forks_its_children() -> None:
    """A child's first full collection wrote to every object it walked, so one that
    walked the parent's heap copied it: each child held the imports' pages privately
    (`benchmarks.fork_memory`). The main process settles before the first fork."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPIRAL_", "REDIS_URL"))}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(FORKING_SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("shared ")


def test_a_dropped_engine_goes_without_a_full_collection() -> None:
    """An engine in a reference cycle (its combiner held its bound method) stayed
    alive with everything it held until Python's next full collection, which then
    freed it inside whatever ran: a GC run of the next engine paid 11-17 ms for it.
    Dropped, an engine is freed by reference counting, its storage with it."""
    storage = MemoryStorage()
    engine = engine_over(storage)
    engine.store("one", tenant="t")
    engine.gc(25, tenant="t")
    dropped = weakref.ref(engine)
    held = weakref.ref(storage)
    enabled = gc.isenabled()
    gc.disable()
    try:
        del engine, storage
        assert dropped() is None
        assert held() is None
    finally:
        if enabled:
            gc.enable()
