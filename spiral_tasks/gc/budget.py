"""What a GC run can afford: its batches' costs, measured as it goes, and its budget's
deadline less what the run's closing steps will take.

No constant guesses how long a memory or a round trip takes. A batch's cost is split
into a fixed part (its round trips) and a part per memory (`Costs`), and the next batch
is as large as the costlier of the last two batches' lines says fits; a run's closing
steps, which come after its last batch and cannot be measured in time by the run
itself, are kept back as long as the engine's recent runs' closings took (`Closings`,
`Budget.ends`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

#: No batch holds the lock for more memories than this, whatever the budget.
MAX_BATCH = 256
#: The longest a run waits for one tenant's lock, as a share of the time left.
LOCK_WAIT_SHARE = 0.25
#: How many recent batches of a tenant predict the next one: old ones may have run on
#: a quieter machine.
RECENT = 2
#: How much larger than the largest measured batch the next one may be.
GROWTH = 4
#: A batch's fixed part, in round trips: the GC queue, the records, the commit.
FIXED_ROUND_TRIPS = 3
#: The least share of a measured batch counted as the memories' own cost.
MIN_PER_MEMORY_SHARE = 0.25
#: How many of an engine's recent runs say what a run's closing steps cost.
RECENT_CLOSINGS = 8
#: The most of a budget kept back for a run's closing steps: past it, a run did nothing
#: but its first batch (a probe of one) while the closings stayed slow, and a closing
#: that long breaks the budget by a little whatever the batches before it do.
MAX_RESERVE_SHARE = 0.5


class Closings:
    """What the closing steps of an engine's recent runs cost, per round trip: the
    measure of the reserve a run keeps back for its own (the lock's release, the
    cursor, the totals, the announcement), which come after its last batch and so
    cannot be measured in time by the run itself. The slowest of the recent ones, not
    the cheapest round trip the run saw: on Redis under load, a 25 ms run's closing
    (its last batch's end to its own) took 0.8-9.6 ms, median 1.9, while its cheapest
    entry was 0.5-0.8 ms. Shared by the engine's runs, which may overlap in threads."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._per_trip: deque[float] = deque(maxlen=RECENT_CLOSINGS)

    def observe(self, seconds: float, trips: int) -> None:
        """A run's closing steps, `trips` round trips, took `seconds`."""
        with self._guard:
            self._per_trip.append(seconds / max(trips, 1))

    @property
    def round_trip(self) -> float:
        """The slowest closing round trip of the recent runs (0: none yet)."""
        with self._guard:
            return max(self._per_trip, default=0.0)


class Costs:
    """What batches cost in this run: the basis of every batch's size."""

    def __init__(self, round_trip: float = 0.0) -> None:
        #: (memories, seconds) of the tenant's recent batches, the lock wait excluded.
        self.batches: deque[tuple[int, float]] = deque(maxlen=RECENT)
        #: The cheapest entry to a tenant's section in this run (0: none yet).
        self.entry = round_trip
        #: The cheapest batch of the tenant so far (0: none yet).
        self.cheapest = 0.0

    @property
    def round_trip(self) -> float:
        """One round trip, the unit of a batch's fixed part and of the run's closing
        steps (0: nothing measured yet): the cheapest entry to a section, but at most
        a share of the cheapest batch, which made `FIXED_ROUND_TRIPS` of them and
        memories besides. An entry is more than a round trip wherever the lock was
        waited for or the tenant's state reloaded (a store committed since the last
        run): in-process with stores running, one entry of 0.4-11 ms counted as a
        round trip made a batch of 64 all fixed part, so a batch of 256 was predicted
        at twice its cost, not four times, and ran 2.6 times as long as predicted."""
        if not self.cheapest:
            return self.entry
        share = self.cheapest / FIXED_ROUND_TRIPS
        return min(self.entry, share) if self.entry else share

    def observe(self, memories: int, seconds: float) -> None:
        self.batches.append((memories, seconds))
        self.cheapest = min(self.cheapest, seconds) if self.cheapest else seconds

    def entered(self, seconds: float) -> None:
        self.entry = min(self.entry, seconds) if self.entry else seconds

    def _lines(self) -> list[tuple[float, float]]:
        """(fixed, per memory) seconds, one line through each recent batch. A batch's
        fixed part is its round trips (the queue, the records, the commit), at most
        the whole batch; its part per memory is the rest, and at least a share of the
        batch per memory, so a batch whose round trips seemed to take it all does
        not make the next one unbounded."""
        lines = []
        for n, t in self.batches:
            fixed = min(FIXED_ROUND_TRIPS * self.round_trip, t)
            lines.append((fixed, max(t - fixed, t * MIN_PER_MEMORY_SHARE) / max(n, 1)))
        return lines

    def predict(self, memories: int) -> float:
        """A batch of `memories`, as the costliest of the recent batches' lines puts
        it (0: nothing measured yet)."""
        return max((fixed + per * memories for fixed, per in self._lines()), default=0.0)

    def fitting(self, seconds: float) -> int:
        """The largest batch predicted to take at most `seconds` (0: none)."""
        lines = self._lines()
        if not lines:
            return 0
        fits = min(MAX_BATCH if per <= 0 else int((seconds - fixed) / per)
                   for fixed, per in lines)
        # A line drawn through small batches is trusted only so far: measured on a
        # loaded machine, a batch of 128 cost up to three times as much per memory as
        # one of 16 (LevelDB, Redis), so the next batch grows at most `GROWTH` times.
        largest = max(n for n, _ in self.batches)
        return max(0, min(fits, MAX_BATCH, GROWTH * max(largest, 1)))


@dataclass
class Budget:
    """A run's deadline, and what it keeps back before it for its closing steps."""

    deadline: float
    #: The budget, in seconds.
    seconds: float
    #: The run's closing steps after the last lock goes, a round trip each.
    closing: int
    closings: Closings
    #: When the run's last batch ended (0: none yet): its closing is timed from there.
    last_batch: float = 0.0

    def ends(self, costs: Costs) -> float:
        """When batches must have ended: the deadline less the closing steps and the
        round trip that lets the lock go, each as long as the slowest of the engine's
        recent closings (before any, this run's round trip). Asked before every
        batch, as measures come in: kept from the hold's start, it was 0 in a run's
        first hold (nothing measured yet), so a 25 ms run, one hold, kept nothing
        back and closed after its deadline."""
        trip = max(self.closings.round_trip, costs.round_trip)
        return self.deadline - min((self.closing + 1) * trip,
                                   self.seconds * MAX_RESERVE_SHARE)

    def lock_wait(self, costs: Costs, need: float, now: float, *, forced: bool) -> float:
        """How long to wait for a tenant's lock at `now`: a share of the time left,
        less `need` (a batch of one). The run's first batch starts whatever the
        budget, so its wait is a share of the budget itself, not of what is left once
        the closing is kept back: a reserve past the budget (a loaded server's
        closings) left it no wait at all, and a run passed its first tenant by
        whenever a store held the lock for a moment."""
        left = (self.deadline if forced else self.ends(costs)) - now
        return max(0.0, min(left * LOCK_WAIT_SHARE, left - need))

    def closed(self) -> None:
        """The run's closing steps are done: what they took is measured."""
        if self.last_batch:
            self.closings.observe(time.perf_counter() - self.last_batch, self.closing + 1)

