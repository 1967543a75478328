"""Benchmark only: a worker whose engine stores with the least work durable on Redis.

`celery worker -I benchmarks.floor_engine` (with the repository on PYTHONPATH) imports
this in the worker's main process before the pool forks, as `instant_engine` does.
Every process's `store` then makes one round trip to the storage Redis: one script
that writes the memory's record and adds one to its tenant's count, with nothing
checked, placed, audited or cached. No engine that keeps a store on Redis can do less
per store; the store/no-op ratio of this worker is the ceiling of any such engine
(issue 10, target 1), where the instant engine's is the Celery layer's alone.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from typing import Any

import redis

from benchmarks.instant_engine import HANDLE, InstantEngine
from spiral_tasks.config import Settings
from spiral_tasks.results import StoreResult
from spiral_tasks.tasks import runtime

#: One record written and one count added, in one round trip.
WRITE = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], 1)"

_settings = Settings.from_env()
assert _settings.redis_url, "the floor engine stores on Redis: set REDIS_URL"
_ids = itertools.count()


class FloorEngine(InstantEngine):
    """`store` writes one record and one count on Redis, then answers as the instant
    engine does; the client is made in each process (after the fork)."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._pid = 0

    def store(self, content: str, **kwargs: Any) -> StoreResult:
        if self._pid != os.getpid():
            self._client = redis.Redis.from_url(_settings.redis_url or "")
            self._script = self._client.register_script(WRITE)
            self._pid = os.getpid()
        tenant = kwargs.get("tenant", HANDLE.tenant)
        memory_id = kwargs.get("memory_id") or f"{os.getpid()}-{next(_ids)}"
        self._script(keys=[f"floor:{tenant}:{memory_id}", f"floor:{tenant}:count"],
                     args=[content])
        return replace(HANDLE, id=memory_id, tenant=tenant, gc_due=False)


_floor = FloorEngine()
runtime.engine = lambda: _floor  # type: ignore[assignment,return-value]
