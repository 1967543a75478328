"""spiral-tasks: the Spiral Memory Architecture as a distributed task-queue system.

`SpiralMemory` (the engine) knows nothing of Celery; `spiral_tasks.open_engine` builds
one from the environment.
"""

from spiral_tasks.engine import SpiralMemory
from spiral_tasks.factory import open_engine
from spiral_tasks.results import StoreResult, TenantStats

__all__ = ["SpiralMemory", "StoreResult", "TenantStats", "open_engine"]
