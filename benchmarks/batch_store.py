"""Benchmark only: `spiral.store_memory` consumed in batches (celery-batches).

`celery worker -I benchmarks.batch_store --prefetch-multiplier M` (the repository on
PYTHONPATH, celery-batches installed: it is no dependency of the project) imports
this in the worker's main process before the pool forks. It registers, under the
store task's own name, a celery-batches `Batches` task: the main process buffers the
store requests it receives and hands them, `FLUSH_EVERY` at a time or whatever came
within `FLUSH_INTERVAL_S`, to one pool child as one list. The child runs them as the
real task would (the same argument check, each store validated under its own task's
audit actor, the memory id its task id unless given, gc sent when due), but through
the engine's batch path: one `_store_batch` per tenant for up to `STORE_BATCH`
stores, which is what the engine's combiner does with concurrent callers. Each
request then gets its own result, written as the real task's would be (Celery's
encoding under its key), a failure as a failure and a transient error as a retry.

A measurement spike for issue 10 (does batching bring the store/no-op ratio to 0.90?),
not a way to deploy: celery-batches acknowledges every late-acked request of a batch
when the batch returns, whatever happened to it, and none when its child dies (see
BENCHMARKS.md, "Targets 1 and 2: store messages consumed in batches").
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Iterator
from typing import Any

from celery import signals
from celery_batches import Batches, SimpleRequest  # type: ignore[import-untyped]

from spiral_tasks.audit.actor import Actor, acting
from spiral_tasks.config import current
from spiral_tasks.engine import STORE_BATCH
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.observe import Observer
from spiral_tasks.store import StorePending, StoreRequest
from spiral_tasks.tasks import runtime
from spiral_tasks.tasks.app import app
from spiral_tasks.tasks.base import TRANSIENT, SpiralTask, backoff, check_arguments
from spiral_tasks.tasks.tasks import gc, store_memory

#: Requests per batch: a flush as soon as this many are buffered.
FLUSH_EVERY = int(os.environ.get("BATCH_FLUSH_EVERY", "16"))
#: Seconds before a partial buffer is flushed anyway.
FLUSH_INTERVAL_S = float(os.environ.get("BATCH_FLUSH_INTERVAL_S", "0.01"))
#: Seconds each batch waits before storing: 0, except to kill a child mid-batch.
PAUSE_S = float(os.environ.get("BATCH_PAUSE_S", "0"))

_real: SpiralTask = store_memory
#: The real task's arguments, checked as it checks them.
SIGNATURE = _real._signature


def chunks(pendings: list[StorePending]) -> Iterator[list[StorePending]]:
    for start in range(0, len(pendings), STORE_BATCH):
        yield pendings[start:start + STORE_BATCH]


class StoreBatches(Batches):  # type: ignore[misc]
    """`spiral.store_memory`, late-acked and rejected on a lost worker like the real
    one, run as lists of requests."""

    name = _real.name
    acks_late = True
    reject_on_worker_lost = True
    flush_every = FLUSH_EVERY
    flush_interval = FLUSH_INTERVAL_S

    def run(self, requests: list[SimpleRequest]) -> None:
        if PAUSE_S:
            time.sleep(PAUSE_S)
        tenants: dict[str, list[tuple[SimpleRequest, StorePending]]] = {}
        for req in requests:
            staged = self._validated(req)
            if staged is not None:
                tenants.setdefault(staged.tenant, []).append((req, StorePending(staged)))
        engine = runtime.engine()
        timed = engine.observer.__class__ is not Observer
        for tenant, staged_requests in tenants.items():
            by_pending = {id(p): r for r, p in staged_requests}
            for chunk in chunks([p for _, p in staged_requests]):
                started = time.perf_counter()
                try:
                    engine._store_batch(tenant, chunk)
                except Exception as exc:  # the whole chunk failed: nothing answered
                    for pending in chunk:
                        if not pending.done:
                            pending.fail(exc)
                elapsed = time.perf_counter() - started
                for pending in chunk:
                    req = by_pending[id(pending)]
                    if timed:
                        engine.observer.operation("store", tenant, elapsed,
                                                  pending._error is None)
                    self._answer(req, pending)

    def _validated(self, req: SimpleRequest) -> StoreRequest | None:
        """The request as the engine takes it, or None once its failure is written."""
        try:
            check_arguments(self.name, SIGNATURE, tuple(req.args), req.kwargs)
            bound = SIGNATURE.bind(*req.args, **req.kwargs)
            bound.apply_defaults()
            given = bound.arguments
            with acting(Actor(task=req.id, worker=req.hostname)):
                return StoreRequest.validated(
                    given["content"], given["type"], given["depth"],
                    given["associations"], given["tenant"],
                    req.id if given["memory_id"] is None else given["memory_id"])
        except InvalidArgument as exc:
            self._fail(req, exc)
            return None

    def _answer(self, req: SimpleRequest, pending: StorePending) -> None:
        try:
            result = pending.outcome()
        except TRANSIENT as exc:
            self._retry(req, exc)
            return
        except Exception as exc:
            self._fail(req, exc)
            return
        if result.gc_due:
            gc.apply_async(kwargs={"tenant": result.tenant})
        self.backend.mark_as_done(req.id, result.to_json(), request=req)

    def _fail(self, req: SimpleRequest, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(exc))
        # No errbacks: a SimpleRequest carries none (celery-batches drops them).
        self.backend.mark_as_failure(req.id, exc, tb, request=req, call_errbacks=False)

    def _retry(self, req: SimpleRequest, exc: BaseException) -> None:
        """As `SpiralTask` retries: the same task id sent again with a backoff."""
        retries = (req.request_dict or {}).get("retries", 0) or 0
        policy = current().tasks.retry
        if retries >= policy.max_retries:
            self._fail(req, exc)
            return
        self.apply_async(req.args, req.kwargs, task_id=req.id, retries=retries + 1,
                         countdown=backoff(retries, policy))
        self.backend.mark_as_retry(req.id, exc, request=req)
        signals.task_retry.send(sender=self, request=req, reason=exc, einfo=None)


batch_task: Any = app.register_task(StoreBatches())
