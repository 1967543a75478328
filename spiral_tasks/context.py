"""What every operation needs besides its section: policies, the clock, ids, sigils."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spiral_tasks.config import GcPolicy, Limits
from spiral_tasks.sigils import Sigils


@dataclass(frozen=True)
class Context:
    limits: Limits
    gc: GcPolicy
    sigils: Sigils
    #: Wall-clock seconds (GC deadlines, created/accessed times); tests move it by hand.
    clock: Callable[[], float]
    #: A fresh memory id for a store that names none.
    new_id: Callable[[], str]
