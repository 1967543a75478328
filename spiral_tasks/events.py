"""Events the engine publishes (Redis pub/sub; dropped by backends without it).

Each is a JSON object on a fixed channel:

    spiralmemory:stored         a store's handle ({"id", "tenant", "spiral_id", ...})
    spiralmemory:collected      {"id", "tenant"} of a memory collected by id
    spiralmemory:gc_tick        a GC run's report ({"collected", "remaining", ...})
    spiralmemory:rebuild_stats  a rebuild's report

Store and collect events go out in the same atomic step as the write they announce,
so a subscriber never hears of a write that did not happen.
"""

from __future__ import annotations

from typing import Any

import orjson

from spiral_tasks.storage.base import Publish

STORED = "spiralmemory:stored"
COLLECTED = "spiralmemory:collected"
GC_TICK = "spiralmemory:gc_tick"
REBUILD_STATS = "spiralmemory:rebuild_stats"


def event(channel: str, payload: dict[str, Any]) -> Publish:
    return Publish(channel, orjson.dumps(payload).decode())
