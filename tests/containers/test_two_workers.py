"""Two worker containers of the project's image on one tenant: the invariant stays
exact while both store into it and collect from it at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult
from pytest_celery import (
    CeleryTestSetup,
    CeleryTestWorker,
    CeleryWorkerCluster,
    CeleryWorkerContainer,
)

from spiral_tasks.engine import SpiralMemory
from tests.containers.conftest import STORE
from tests.invariants import assert_consistent

WAIT = 120
STORES = 600
COLLECTS = 150


@pytest.fixture
def second_worker(second_worker_container: CeleryWorkerContainer,
                  default_worker_app: Celery) -> Iterator[CeleryTestWorker]:
    worker = CeleryTestWorker(second_worker_container, app=default_worker_app)
    yield worker
    worker.teardown()


@pytest.fixture
def celery_worker_cluster(celery_worker: CeleryTestWorker,
                          second_worker: CeleryTestWorker) -> Iterator[CeleryWorkerCluster]:
    cluster = CeleryWorkerCluster(celery_worker, second_worker)
    yield cluster
    cluster.teardown()


def test_two_worker_containers_on_one_tenant_keep_the_invariant(
        celery_setup: CeleryTestSetup, storage_view: SpiralMemory) -> None:
    workers = list(celery_setup.worker_cluster)
    assert len({w.hostname() for w in workers}) == 2
    replies = celery_setup.app.control.ping(timeout=5)
    assert {node for reply in replies for node in reply} == {w.hostname() for w in workers}

    send = celery_setup.app.send_task
    stores: list[AsyncResult[Any]] = [
        send(STORE, kwargs={"content": f"pair {i}", "tenant": "pair", "memory_id": f"p-{i}"})
        for i in range(STORES)]
    # Collects race the stores of the same ids: each finds its memory or not yet.
    collects: list[AsyncResult[Any]] = [
        send("spiral.collect_memory", kwargs={"memory_id": f"p-{i}", "tenant": "pair"})
        for i in range(0, 2 * COLLECTS, 2)]
    assert [r.get(timeout=WAIT, interval=0.05)["id"] for r in stores] == \
        [f"p-{i}" for i in range(STORES)]
    collected = sum(r.get(timeout=WAIT, interval=0.05)["collected"] for r in collects)

    for worker in workers:  # both took their share of the stores
        worker.assert_log_exists(f"{STORE}[", timeout=5)
    # A collect that found nothing left no tombstone to stop a later store of its id,
    # so exactly the collected memories are gone.
    assert assert_consistent(storage_view, "pair") == STORES - collected
