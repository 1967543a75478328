"""The project's image as a pytest-celery worker: the producer contract by task name,
and a worker container killed in the middle of a run.

The producer is pytest-celery's bare app (it knows the broker, the results and the
queue, nothing of the project), in this process; the worker and Redis run in
containers. See conftest.py for the setup.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pytest_celery import CeleryTestSetup, CeleryTestWorker

from spiral_tasks.engine import SpiralMemory
from spiral_tasks.keys import TenantKeys
from spiral_tasks.testing.waiting import wait_until
from tests.containers.conftest import STORE, VISIBILITY_TIMEOUT_S
from tests.containers.stores import StoreRun, drained
from tests.invariants import assert_consistent

WAIT = 60


def call(setup: CeleryTestSetup, name: str, **kwargs: Any) -> Any:
    return setup.app.send_task(name, kwargs=kwargs).get(timeout=WAIT, interval=0.05)


def test_the_producer_contract_by_task_name(celery_setup: CeleryTestSetup) -> None:
    worker = celery_setup.worker
    for task in (STORE, "spiral.collect_memory", "spiral.retrieve_memory", "spiral.gc",
                 "spiral.rebuild_stats", "spiral.stats", "spiral.noop"):
        worker.assert_log_exists(f". {task}", timeout=5)  # the banner's task list

    stored = call(celery_setup, STORE, content="shape", depth="deep", tenant="contract",
                  memory_id="c-1")
    assert set(stored) == {"id", "tenant", "spiral_id", "sigil", "position", "created"}
    assert set(stored["position"]) == {"index", "angle", "radius", "x", "y", "turn"}
    assert stored["created"] is True
    assert call(celery_setup, STORE, content="shape", tenant="contract",
                memory_id="c-1") == {**stored, "created": False}
    memory = call(celery_setup, "spiral.retrieve_memory", memory_id="c-1", tenant="contract")
    assert (memory["content"], memory["access_count"]) == ("shape", 1)
    stats = call(celery_setup, "spiral.stats", tenant="contract")
    assert (stats["total_memories"], stats["consistent"]) == (1, True)
    assert call(celery_setup, "spiral.collect_memory", memory_id="c-1",
                tenant="contract") == {"id": "c-1", "collected": True}
    assert call(celery_setup, "spiral.retrieve_memory", memory_id="c-1",
                tenant="contract") is None
    gc = call(celery_setup, "spiral.gc", tenant="contract", time_budget_ms=50)
    assert set(gc) == {"collected", "remaining", "duration_ms", "complete", "time_budget_ms",
                       "collected_ids"}
    assert call(celery_setup, "spiral.noop") is None
    worker.assert_log_exists(f"{STORE}[", timeout=5)

    refused = celery_setup.app.send_task(STORE, kwargs={"content": "x", "memory_id": ""})
    with pytest.raises(Exception, match=r"^memory_id") as error:
        refused.get(timeout=WAIT, interval=0.05)
    assert type(error.value).__name__ == "InvalidArgument"


def receptions(log: str, task_id: str) -> int:
    """How many times `log` says a task message with this id arrived (a store, or a GC
    one of them enqueued)."""
    return log.count(f"[{task_id}] received")


def task_id(unacked: str) -> str:
    """The task id of a message kombu keeps in its `unacked` hash (under its delivery
    tag, with the exchange and routing key)."""
    message, _exchange, _routing_key = json.loads(unacked)
    return str(message["headers"]["id"])


def ready_banners(worker: CeleryTestWorker) -> int:
    return worker.logs().count(f"{worker.hostname()} ready.")


def test_a_killed_worker_container_loses_and_doubles_nothing(
        celery_setup: CeleryTestSetup, storage_view: SpiralMemory) -> None:
    """SIGKILL of the whole worker container (its main process and pool children) in
    the middle of 400 stores, then a restart: every store answered before the kill is
    kept, the messages the worker held come back once their visibility timeout passes,
    and after the producer resends what was never answered (stores.py), every store is
    there exactly once."""
    worker = celery_setup.worker
    broker = celery_setup.broker.container.client
    run = StoreRun(celery_setup.app, "kill", 400)
    wait_until(lambda: worker.logs().count(f"{STORE}[") >= 100, WAIT, interval=0.2,
               message="the worker to be busy with the stores")
    worker.kill()
    assert worker.container.status == "exited"
    acknowledged = run.answered()
    assert len(acknowledged) < len(run.ids)  # killed in the middle of the run
    held = broker.zrange("unacked_index", 0, -1, withscores=True)
    assert held, "the killed worker held no message"
    held_ids = [task_id(broker.hget("unacked", tag)) for tag, _ in held]
    first_life = worker.logs()

    # Wait for the held messages to become visible again (not a sleep: the condition
    # is their age in the broker), then restart the container as a supervisor would.
    wait_until(lambda: max(score for _, score in held) < time.time() - VISIBILITY_TIMEOUT_S,
               VISIBILITY_TIMEOUT_S + 10, interval=0.2,
               message="the held messages' visibility timeout to pass")
    worker.restart()
    wait_until(lambda: ready_banners(worker) == 2, WAIT, interval=0.2,
               message="the restarted worker to be ready")
    wait_until(lambda: drained(broker), WAIT, interval=0.2,
               message="every message to be done and acknowledged")
    second_life = worker.logs()[len(first_life):]
    redelivered = [i for i in held_ids if receptions(second_life, i)]
    assert redelivered, "no held message was delivered again"
    # Delivered twice: the first life had received them. Not necessarily all of them:
    # the transport moves a message into `unacked` a moment before the worker logs
    # it, and the kill may fall in between (held, never logged as received).
    assert any(receptions(first_life, i) for i in redelivered)

    run.resend_unanswered()
    assert [a["id"] for a in run.answers(WAIT)] == run.ids
    keys = TenantKeys("kill")
    assert all(storage_view.storage.get_many([keys.memory(i) for i in acknowledged]))
    assert assert_consistent(storage_view, "kill") == len(run.ids)
