"""The folder a worker node's processes share their samples through.

prometheus_client's multiprocess mode keeps each process's samples in memory-mapped
files under `PROMETHEUS_MULTIPROC_DIR`, and the exporter adds them up. The client
decides whether it is in that mode when it is first imported, from the environment,
and the `celery` command imports it before any code of ours runs (Flower's command
does). So when the variable was not set beforehand, `ensure_multiprocess` sets it and
switches the client's value class itself: every family is made afterwards
(`families.py`), in the worker's main process or, after the fork, in its children.

One folder serves one node: its files are wiped when the node starts (counters start
again from zero, which Prometheus reads as a restart) and a node holds an exclusive
lock on it while it runs, so a second node given the same folder is refused instead
of mixing or wiping the first one's samples.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from prometheus_client import values

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LOCK_NAME = ".node.lock"


class FolderInUse(RuntimeError):
    """Another running node holds the folder."""


def default_folder(port: int) -> Path:
    """A folder per user and port: nodes on one host have a port each, so a folder each."""
    return Path(tempfile.gettempdir()) / f"spiral-metrics-{os.getuid()}-{port}"


def ensure_multiprocess(folder: Path) -> None:
    """Point the client at `folder` and make sure families made from now on write there."""
    os.environ[VARIABLE] = str(folder)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError("prometheus_client did not switch to its multiprocess mode; "
                           f"set {VARIABLE} before starting the worker")


@dataclass
class ClaimedFolder:
    path: Path
    _lock_file: IO[bytes]

    def release(self) -> None:
        self._lock_file.close()


def claim(folder: Path) -> ClaimedFolder:
    """Create `folder` (private to this user), lock it for this node, wipe old samples.
    Raises `FolderInUse` when a running node holds it, `OSError` when it cannot be made."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock_file = (folder / LOCK_NAME).open("ab")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise FolderInUse(f"{VARIABLE} {folder} is used by another running worker node; "
                          "give each node its own folder (or its own METRICS_PORT, "
                          "which gives it its own default folder)") from None
    for stale in folder.glob("*.db"):
        stale.unlink()
    return ClaimedFolder(folder, lock_file)
