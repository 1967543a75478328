"""Storage backends behind one contract (`base.Storage`)."""

from spiral_tasks.storage.base import (
    Delete,
    Increment,
    IndexPut,
    IndexRemove,
    Put,
    Storage,
    Write,
)

__all__ = ["Delete", "Increment", "IndexPut", "IndexRemove", "Put", "Storage", "Write"]
