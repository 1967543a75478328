"""Benchmark only: a worker whose engine answers a store at once.

`celery worker -I benchmarks.instant_engine` (with the repository on PYTHONPATH)
imports this in the worker's main process before the pool forks: every process then
gets, instead of its engine, one whose `store` returns the same handle, made once by
a real store into an in-memory engine. What is left of a store task is the Celery
layer alone (arguments, the task's result written, events, acknowledgement): its
ceiling for the store/no-op ratio. Nothing else in the worker is changed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from spiral_tasks.config import Settings
from spiral_tasks.factory import open_engine
from spiral_tasks.results import StoreResult
from spiral_tasks.tasks import runtime

_real = open_engine(Settings.from_env({"SPIRAL_STORAGE": "memory"}))
HANDLE = _real.store("benchmark memory " + "x" * 100, tenant="t0")


class InstantEngine:
    """Answers `store` with `HANDLE` (its id and tenant the caller's); anything else
    goes to the in-memory engine."""

    def store(self, content: str, **kwargs: Any) -> StoreResult:
        return replace(HANDLE, id=kwargs.get("memory_id") or HANDLE.id,
                       tenant=kwargs.get("tenant", HANDLE.tenant), gc_due=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(_real, name)


_instant = InstantEngine()
runtime.engine = lambda: _instant  # type: ignore[assignment,return-value]
