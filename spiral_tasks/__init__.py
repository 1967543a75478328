"""spiral-tasks: the Spiral Memory Architecture as a distributed task-queue system.

`SpiralMemory` (the engine) knows nothing of Celery, redis-py or plyvel;
`spiral_tasks.open_engine` builds one from the environment (importing the backend
the settings select, and only that one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spiral_tasks.engine import SpiralMemory
from spiral_tasks.results import StoreResult, TenantStats

if TYPE_CHECKING:
    from spiral_tasks.factory import open_engine

__all__ = ["SpiralMemory", "StoreResult", "TenantStats", "open_engine"]


def __getattr__(name: str) -> Any:
    # Lazily, so `import spiral_tasks.engine` does not import every backend's client.
    if name == "open_engine":
        from spiral_tasks.factory import open_engine  # noqa: PLC0415

        return open_engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
