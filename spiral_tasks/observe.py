"""What the engine reports as it works, for whoever measures it.

The engine calls an `Observer` at the moments worth measuring: a lock taken (and how
long it was waited for), a lock that timed out or was lost, an operation's latency, a
tenant's counts after a commit, a GC run, a rebuild, an invariant check. The default
observer does nothing. Prometheus metrics (`spiral_tasks/metrics/`) and the perf
harness implement it, so the engine imports no metrics library and a benchmark can
observe without an exporter.

Observers are called on the engine's hot paths, inside critical sections: they must
be quick and must not raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spiral_tasks.gc.policy import GcReport
    from spiral_tasks.rebuild import RebuildReport


class Observer:
    """Does nothing; subclasses measure what they need."""

    def lock_acquired(self, tenant: str, waited_s: float) -> None:
        """A section entered its tenant's lock after waiting `waited_s`."""

    def lock_timed_out(self, tenant: str, waited_s: float) -> None:
        """A section gave up waiting for its tenant's lock (`LockTimeout`)."""

    def lock_lost(self, tenant: str) -> None:
        """A commit or an extension found the lock gone (`LockLost`): fencing refused
        a holder whose lock expired."""

    def operation(self, name: str, tenant: str, seconds: float, ok: bool) -> None:
        """A store, collect or retrieve finished (`ok`: without raising)."""

    def tenant_counts(self, tenant: str, memories: int, spirals: int) -> None:
        """A commit left the tenant with `memories` memories in `spirals` spirals."""

    def gc_ran(self, report: GcReport) -> None:
        """A GC run ended: its duration is one pause."""

    def rebuilt(self, report: RebuildReport) -> None:
        """A rebuild ended, with the corrections it made."""

    def invariant(self, tenant: str, holds: bool) -> None:
        """The tenant's invariant was checked (total == spiral sum == node records)."""


#: The observer engines get when none is given.
NO_OBSERVER = Observer()
