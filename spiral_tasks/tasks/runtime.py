"""One engine per worker process, opened after fork, rebuilt from storage at startup.

A prefork worker's children must not share the parent's connections (or its LevelDB
handle), so the engine is opened lazily in the process that runs tasks and reopened if
the process id changed. The first open in a process runs the startup rebuild, unless
another process did within `SPIRAL_STARTUP_REBUILD_WINDOW_S` (60 s): a fleet starting
at once rebuilds once, not once per child.
"""

from __future__ import annotations

import logging
import os
import threading

from spiral_tasks.config import current
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import SpiralError
from spiral_tasks.factory import open_engine
from spiral_tasks.metrics.observer import PrometheusObserver
from spiral_tasks.observe import NO_OBSERVER
from spiral_tasks.rebuild import RebuildReport
from spiral_tasks.storage.factory import storage_from

log = logging.getLogger(__name__)

_lock = threading.Lock()
_engine: SpiralMemory | None = None
_pid: int | None = None


def engine() -> SpiralMemory:
    global _engine, _pid  # noqa: PLW0603 - the process's one engine
    opened = _engine
    if opened is not None and _pid == os.getpid():
        return opened  # every task after the first: no lock taken
    with _lock:
        if _engine is None or _pid != os.getpid():
            settings = current()
            observer = PrometheusObserver() if settings.metrics.port else NO_OBSERVER
            _engine = open_engine(settings, observer)
            _pid = os.getpid()
            startup_rebuild(_engine)
        return _engine


def check_storage() -> None:
    """Open this process's storage and close it again: `StorageUnavailable` (an
    `EncryptionKeyMissing` included) if a worker could not serve from it."""
    storage_from(current()).close()


def startup_rebuild(opened: SpiralMemory) -> bool:
    """Rebuild once per window across processes. A rebuild that fails (a tenant's
    lock busy past the wait) is logged and the process serves anyway: the rebuild is
    a check, and a worker child that died in it would be replaced only to fail again,
    forever."""
    window = current().tasks.startup_rebuild_window_s
    if not opened.coordinator.claim("startup_rebuild", window):
        log.info("startup rebuild: another process rebuilt within %.0f s, skipped", window)
        return False
    try:
        report = opened.rebuild_stats()
    except SpiralError as exc:
        log.error("startup rebuild failed, serving anyway: %s: %s", type(exc).__name__, exc)
        return False
    log.info("startup rebuild corrected %d spiral(s), %d counter(s) over %d nodes in "
             "%.1f ms", len(report.corrected_spirals), len(report.corrected_counters),
             report.total_nodes, report.duration_ms)
    log_trouble("startup rebuild", report)
    return True


def log_trouble(what: str, report: RebuildReport) -> None:
    """What an operator must look at after a rebuild, one error line each: every
    record it quarantined, every tenant it refused."""
    for moved in report.quarantined:
        log.error("%s quarantined %s (%s) to %s", what, moved.key, moved.reason,
                  moved.moved_to)
    for refusal in report.refused:
        log.error("%s refused: %s", what, refusal.reason)


def close() -> None:
    global _engine  # noqa: PLW0603
    with _lock:
        if _engine is not None and _pid == os.getpid():
            _engine.close()
        _engine = None
