"""The producer contract. Names, arguments and result shapes are an interface: producer
apps in any language send these by name, with JSON arguments.

Store and collect are acknowledged late and requeued if their worker dies: both are
idempotent (a store without `memory_id` uses its task id as the memory id, so a
redelivered store finds what the first attempt wrote; a collected id leaves a
tombstone). Lock contention and lost connections become retries with exponential
backoff and full jitter; bad arguments fail at once, naming the argument.
"""

from __future__ import annotations

from typing import Any

from spiral_tasks.config import current
from spiral_tasks.tasks import reprs, runtime, signals  # noqa: F401 - signals: connects handlers
from spiral_tasks.tasks.app import app
from spiral_tasks.tasks.base import SpiralTask
from spiral_tasks.tasks.config import TimeLimits

reprs.install()  # each task's result repr'd cheaply (spiral_tasks/tasks/reprs.py)
GC_LIMITS = TimeLimits.of(current().tasks.gc_time_limit_s)
REBUILD_LIMITS = TimeLimits.of(current().tasks.rebuild_time_limit_s)


@app.task(name="spiral.store_memory", base=SpiralTask, bind=True, acks_late=True,
          reject_on_worker_lost=True)
def store_memory(self: SpiralTask, content: str, type: str = "general", depth: str = "shallow",
                 associations: list[str] | None = None, tenant: str = "default",
                 memory_id: str | None = None) -> dict[str, Any]:
    result = runtime.engine().store(content, type=type, depth=depth,
                                    associations=associations, tenant=tenant,
                                    memory_id=self.request.id if memory_id is None
                                    else memory_id)
    if result.gc_due:
        gc.apply_async(kwargs={"tenant": result.tenant})
    return result.to_json()


@app.task(name="spiral.collect_memory", base=SpiralTask, bind=True, acks_late=True,
          reject_on_worker_lost=True)
def collect_memory(self: SpiralTask, memory_id: str, tenant: str = "default") -> dict[str, Any]:
    return {"id": memory_id, "collected": runtime.engine().collect(memory_id, tenant=tenant)}


@app.task(name="spiral.retrieve_memory", base=SpiralTask, bind=True)
def retrieve_memory(self: SpiralTask, memory_id: str,
                    tenant: str = "default") -> dict[str, Any] | None:
    memory = runtime.engine().retrieve(memory_id, tenant=tenant)
    return None if memory is None else memory.to_json()


@app.task(name="spiral.retrieve_by_sigil", base=SpiralTask, bind=True)
def retrieve_by_sigil(self: SpiralTask, sigil: str,
                      tenant: str = "default") -> dict[str, Any] | None:
    """The memory the sigil opens in the tenant, or null: a capability, refused alike
    (null, the same work) however it fails. Reads only."""
    memory = runtime.engine().retrieve_by_sigil(sigil, tenant=tenant)
    return None if memory is None else memory.to_json()


@app.task(name="spiral.gc", base=SpiralTask, bind=True,
          time_limit=GC_LIMITS.hard, soft_time_limit=GC_LIMITS.soft)
def gc(self: SpiralTask, time_budget_ms: float | None = None,
       tenant: str | None = None) -> dict[str, Any]:
    return runtime.engine().gc(time_budget_ms, tenant=tenant).to_json()


@app.task(name="spiral.rebuild_stats", base=SpiralTask, bind=True,
          time_limit=REBUILD_LIMITS.hard, soft_time_limit=REBUILD_LIMITS.soft)
def rebuild_stats(self: SpiralTask, tenant: str | None = None) -> dict[str, Any]:
    report = runtime.engine().rebuild_stats(tenant)
    runtime.log_trouble(self.name, report)
    return report.to_json()


@app.task(name="spiral.stats", base=SpiralTask, bind=True)
def stats(self: SpiralTask, tenant: str = "default") -> dict[str, Any]:
    return runtime.engine().stats(tenant).to_json()


@app.task(name="spiral.noop", base=SpiralTask)
def noop() -> None:
    """Does nothing: the yardstick the store task is benchmarked against. Checked like
    every task: an argument sent to it is InvalidArgument, not a TypeError."""


__all__ = ["collect_memory", "gc", "noop", "rebuild_stats", "retrieve_by_sigil",
           "retrieve_memory", "stats", "store_memory"]
