"""Stores sent by task name while a worker is killed, and what the producer contract
asks of their producer afterwards.

A worker whose main process is SIGKILLed can lose the one message it was fetching:
kombu's Redis transport pops it (BRPOP) and records it as unacknowledged in a second
round trip, so a kill between the two leaves it nowhere. Messages it had recorded come
back after the visibility timeout. So, as the README's producer contract says, the
producer resends every store left unanswered with the same memory_id, and the test then
expects every store exactly once.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult

from spiral_tasks.tasks.config import DEFAULT_QUEUE, MAINTENANCE_QUEUE
from tests.containers.conftest import STORE


class StoreRun:
    """`count` stores into `tenant`, each with its own memory_id."""

    def __init__(self, app: Celery, tenant: str, count: int) -> None:
        self.app = app
        self.tenant = tenant
        self.ids = [f"{tenant}-{i}" for i in range(count)]
        self.results = {i: self.send(i) for i in self.ids}
        self.resent: list[str] = []

    def send(self, memory_id: str) -> AsyncResult[Any]:
        return self.app.send_task(STORE, kwargs={"content": f"{self.tenant} {memory_id}",
                                                 "tenant": self.tenant,
                                                 "memory_id": memory_id})

    def answered(self) -> set[str]:
        """The ids whose store has been answered (acknowledged) so far."""
        return {i for i, result in self.results.items() if result.ready()}

    def resend_unanswered(self) -> list[str]:
        """Once nothing is queued or held any more, resend what was never answered:
        those messages were lost with the worker that was fetching them."""
        self.resent = sorted(set(self.ids) - self.answered())
        self.results.update({i: self.send(i) for i in self.resent})
        return self.resent

    def answers(self, timeout: float) -> list[dict[str, Any]]:
        return [self.results[i].get(timeout=timeout, interval=0.05) for i in self.ids]


def drained(broker: redis.Redis) -> bool:
    """No message queued and none held unacknowledged (kombu's `unacked_index`): with
    late acks, every message delivered so far has finished and stored its result."""
    return (broker.llen(DEFAULT_QUEUE) == 0 and broker.llen(MAINTENANCE_QUEUE) == 0
            and broker.zcard("unacked_index") == 0)
