"""How long a perf run's operations waited for tenants' locks, as the engine reports it."""

from __future__ import annotations

import threading

from spiral_tasks.observe import Observer


class LockWaits(Observer):
    """Sums the time sections waited for their tenant's lock (timed out or not).

    The share of a run spent waiting is that sum over the operations' summed
    latencies: with concurrent stores combined into one commit, only each batch's
    leader takes the lock, so the share shows what the lock costs, not the queueing.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.waited_s = 0.0
        self.acquired = 0
        self.timed_out = 0
        self.lost = 0

    def lock_acquired(self, tenant: str, waited_s: float) -> None:
        with self._guard:
            self.waited_s += waited_s
            self.acquired += 1

    def lock_timed_out(self, tenant: str, waited_s: float) -> None:
        with self._guard:
            self.waited_s += waited_s
            self.timed_out += 1

    def lock_lost(self, tenant: str) -> None:
        with self._guard:
            self.lost += 1

    def reset(self) -> None:
        """Forget what was seen so far (a run's preparation is not measured)."""
        with self._guard:
            self.waited_s, self.acquired, self.timed_out, self.lost = 0.0, 0, 0, 0

    def share(self, busy_s: float) -> float:
        """Waiting time over `busy_s`, the operations' summed latencies."""
        return self.waited_s / busy_s if busy_s > 0 else 0.0
