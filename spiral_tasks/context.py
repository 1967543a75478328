"""What every operation needs besides its section: policies, the clock, ids, sigils."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spiral_tasks.config import GcPolicy, Limits
from spiral_tasks.security.keyring import KeySource


@dataclass(frozen=True)
class Context:
    limits: Limits
    gc: GcPolicy
    #: The sigil keys (configured, or stored and read again now and then).
    sigils: KeySource
    #: Wall-clock seconds (GC deadlines, created/accessed times); tests move it by hand.
    clock: Callable[[], float]
    #: A fresh memory id for a store that names none.
    new_id: Callable[[], str]
