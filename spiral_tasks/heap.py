"""A settled heap: what a process holds for its whole life is left out of Python's
full garbage collections.

A full collection walks every object the collector tracks, and every thread waits for
it. Once the engine is open, that is mostly what imports left behind (functions,
classes, module dicts: about 45,000 objects, which it never frees), and a full
collection over them took 15-25 ms on this project's machines: every store in flight
in the process, in every thread, waited that long, which is what a p99 shows. Frozen
(`gc.freeze`) after one last collection, those objects are skipped: a full collection
then walks only what the work itself allocated, and took under 0.1 ms.

The engine's own cyclic garbage still goes (only what is alive when the heap settles is
frozen), and so does everything freed by reference counting. A process settles once
(`open_engine` does it before the first engine of a process is built, a worker's
child for its own after the fork; a prefork worker's main process before it forks, so
the children's first collections do not walk, and copy, the heap they share with it):
an object frozen and dropped later is never collected, so freezing on every open, or
freezing the engine itself, would let an application that opens and drops engines leak
them (and a dropped engine's LevelDB lock would keep the database from opening again
in the process).
"""

from __future__ import annotations

import gc
import os
import threading

_guard = threading.Lock()
_settled_in: int | None = None


def settle() -> bool:
    """Collect once, then freeze what survived; once per process (after a fork, the
    child settles its own). Whether this call did it."""
    global _settled_in  # noqa: PLW0603 - the process's one settling
    with _guard:
        if _settled_in == os.getpid():
            return False
        gc.collect()
        gc.freeze()
        _settled_in = os.getpid()
        return True


__all__ = ["settle"]
