"""A GC run: eligible memories collected in short locked batches, within a time budget.

Each batch is sized from what batches cost in this run, and a batch that would not end
before the budget (less a reserve for the run's closing writes, as long as the
engine's recent runs' closings took: see `Closings`) is not started: the run stops
before its budget rather than after it. A run's first batch is one memory, a
probe. Every batch is timed, and so is every entry to a tenant's section (the
cheapest entry is the run's round trip); a batch's cost is split into a fixed part
(its round trips) and a part per memory, and the next batch is as large as the
costlier of the last two batches' lines says fits in half the time left. No constant
guesses how long a memory or a round trip takes: on a slow round trip, a loaded
machine or big records, batches come out smaller; half the time left lets a batch
twice as slow as predicted still end in time. A tenant's first batch is sized from
the previous tenant's batches, the best measure the run has.

A tenant's batches run under one hold of its lock, each committed on its own (what a
batch collected stays collected whatever comes after), for at most `MAX_HOLD_S`: every
handover of the lock is a wait, for the lock and, in a process where other threads
store, for the GIL they hold meanwhile (up to a switch interval each time, see
`slices.py`), and a short budget cannot afford one per batch. Between two holds the
run stays away from the lock for `HANDOVER_S`, so a store waiting behind a hold gets
its turn then, not after the run.

The wait for a tenant's lock is part of the pause, so it is bounded by the time left
less the predicted cost of a batch of one (at most a quarter of the time left); a
tenant whose lock stays busy that long is passed over (its turn comes in the next
rotation) rather than spending the run's budget waiting at it.

Fair across tenants: a run over every tenant starts after the tenant where the last
run stopped (a cursor kept in storage, `meta:gc_cursor`) and walks the tenants in
name order from there, wrapping around. The cursor moves past every tenant the run
worked on, finished or not, and every run works on at least the tenant it starts with
(its first batch starts whatever the budget: a tiny budget, a slow round trip), so
with N tenants each one is reached within N runs, and no run is wasted. Without the
cursor, runs that always started from the first tenant name never reached the later
ones once the budget ran out earlier. A tenant whose spirals, total or counters are
corrupt is passed over too (logged; a rebuild quarantines them), and a corrupt memory
record at the head of the queue loses its queue entry rather than block the ones
behind it.
"""

from __future__ import annotations

import bisect
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from spiral_tasks import events
from spiral_tasks.collect import collect_lowest
from spiral_tasks.context import Context
from spiral_tasks.errors import CorruptRecord, LockLost, LockTimeout
from spiral_tasks.gc.policy import GcReport
from spiral_tasks.keys import GC_CURSOR_KEY, TenantKeys
from spiral_tasks.section import Section, Sections, StateUse
from spiral_tasks.storage.base import Delete, IndexRemove

log = logging.getLogger(__name__)

#: No batch holds the lock for more memories than this, whatever the budget.
MAX_BATCH = 256
#: The longest a run waits for one tenant's lock, as a share of the time left.
LOCK_WAIT_SHARE = 0.25
#: The share of the time left one batch may be planned to take: a batch twice as slow
#: as predicted (a descheduled thread, a slow round trip) still ends in time.
BATCH_SHARE = 0.5
#: How many recent batches of a tenant predict the next one: old ones may have run on
#: a quieter machine.
RECENT = 2
#: How much larger than the largest measured batch the next one may be.
GROWTH = 4
#: The longest one hold of a tenant's lock lasts, batch after batch: stores into the
#: tenant wait for it, and it stays far inside the shortest lock lifetime allowed
#: (`MIN_LOCK_TTL_S`), so it needs no extension.
MAX_HOLD_S = 0.05
#: The most of a lock's lifetime one hold may take (`Coordinator.lock_lifetime_s`): a
#: coordinator built with a shorter lifetime than `MAX_HOLD_S` allows (a Redis lock of
#: 30 ms) lost its lock in every hold that ran its length, and every long run raised
#: `LockLost`.
HOLD_SHARE_OF_LIFETIME = 0.5
#: How long a run stays away from a tenant's lock between two holds: longer than a
#: waiting store's next try (a Redis store polls every `LOCK_POLL_S`, 0.5 ms; a thread
#: blocked on a local lock needs the GIL to wake), so the store waiting behind a hold
#: takes the lock before the run's next hold. Taken again at once, the lock went back
#: to the run first, and a store sat out hold after hold (hundreds of ms behind a 2 s
#: budget).
HANDOVER_S = 0.001
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


def rotated(tenants: Sequence[str], cursor: object) -> list[str]:
    """`tenants` (sorted) starting after `cursor`, wrapping around."""
    if not isinstance(cursor, str):
        return list(tenants)
    start = bisect.bisect_right(tenants, cursor)
    return [*tenants[start:], *tenants[:start]]


def run(ctx: Context, sections: Sections, tenants: Sequence[str], budget_ms: float, *,
        resume: bool, closings: Closings | None = None) -> GcReport:
    """GC `tenants` within `budget_ms`. `resume`: start after the stored cursor and move
    it (a run over every tenant); otherwise visit `tenants` as given. `closings`: the
    engine's measure of its runs' closing steps (see `Closings`), which this run's
    closing adds to."""
    storage = sections.storage
    started = time.perf_counter()
    closings = closings if closings is not None else Closings()
    report = GcReport(time_budget_ms=budget_ms)
    # Read tolerantly: a corrupt cursor is no cursor (it is written again below).
    order = (rotated(tenants, storage.read_many([GC_CURSOR_KEY])[0]) if resume
             else list(tenants))
    last_touched = None
    previous = Costs()
    # The closing steps, a round trip each: the cursor, the totals not known from a
    # section, the announcement.
    budget = Budget(started + budget_ms / 1000, budget_ms / 1000, 3 if resume else 1,
                     closings)
    counts: dict[str, int] = {}
    for position, tenant in enumerate(order):
        costs = Costs(previous.round_trip)
        outcome = _tenant(ctx, sections, tenant, budget, report, costs, previous,
                          counts, first_of_run=position == 0)
        if costs.batches:
            previous = costs
        if outcome is not Outcome.OUT_OF_TIME:
            last_touched = tenant
        if outcome is not Outcome.DONE:
            report.complete = False
        if outcome in (Outcome.OUT_OF_TIME, Outcome.PARTIAL):
            break
    if resume and last_touched is not None:
        # A hint, not tenant data: two runs racing to set it cost fairness, not safety.
        storage.set(GC_CURSOR_KEY, last_touched)
    unknown = [t for t in tenants if t not in counts]
    read = storage.read_many([TenantKeys(t).memory_count for t in unknown]) if unknown else []
    report.remaining = (sum(counts.get(t, 0) for t in tenants)
                        + sum(c for c in read if isinstance(c, int)))
    report.duration_ms = (time.perf_counter() - started) * 1000
    storage.apply([events.event(events.GC_TICK, report.to_json())])
    budget.closed()
    # The pause callers see (metrics, the task's result) ends after the announcement,
    # whose own payload can only carry the time up to it.
    report.duration_ms = (time.perf_counter() - started) * 1000
    return report


class Outcome(enum.Enum):
    #: Every eligible memory of the tenant was collected.
    DONE = "done"
    #: The tenant's lock stayed busy (a rebuild, a hot tenant): passed over, it gets
    #: its turn in the next rotation, and the run goes on with the next tenant.
    SKIPPED = "skipped"
    #: The budget ran out after some batches of the tenant: the next run starts with
    #: the next tenant, and this one resumes in its turn.
    PARTIAL = "partial"
    #: The budget ran out before any batch of the tenant.
    OUT_OF_TIME = "out of time"


@dataclass
class _Progress:
    """Where one tenant's part of a run stands, from one hold of its lock to the next."""

    #: The run's first batch is still to come (it starts whatever the budget).
    forced: bool
    #: A batch has run: this tenant's own costs size the next one.
    touched: bool = False
    #: Expired tombstones may be left to purge.
    purge: bool = True
    #: Every eligible memory was collected.
    done: bool = False


def _tenant(ctx: Context, sections: Sections, tenant: str, budget: Budget,
            report: GcReport, costs: Costs, previous: Costs,
            counts: dict[str, int], first_of_run: bool) -> Outcome:
    """GC one tenant in batches, each sized to end before `budget.ends`, under one hold of
    its lock (at most `MAX_HOLD_S` and half the lock's lifetime, then it is let go
    and taken again). Its first batch is sized from the previous tenant's batches
    (`previous`), or is a probe of one; the first batch of a run starts whatever the
    budget: every run makes progress."""
    progress = _Progress(forced=first_of_run)
    lifetime = sections.coordinator.lock_lifetime_s
    hold_s = MAX_HOLD_S if lifetime is None else min(MAX_HOLD_S,
                                                     lifetime * HOLD_SHARE_OF_LIFETIME)
    while True:
        started = time.perf_counter()
        # Kept back: the closing steps, and the round trip that lets the lock go.
        left = budget.ends(costs) - started
        if not progress.forced and _size(costs, previous, progress.touched,
                                         left - costs.round_trip) == 0:
            return Outcome.PARTIAL if progress.touched else Outcome.OUT_OF_TIME
        # What a batch of one needs is kept back from the wait.
        need = (costs if progress.touched else previous).predict(1) / BATCH_SHARE
        wait = budget.lock_wait(costs, need, started, forced=progress.forced)
        try:
            with sections.enter(tenant, state=StateUse.LOAD, timeout_s=wait) as section:
                entered = time.perf_counter()
                costs.entered(entered - started)
                held = _hold(ctx, section, progress, costs, previous, entered + hold_s,
                             budget, report, counts)
                section.commit(final=True)
        except LockTimeout:
            return Outcome.SKIPPED
        except LockLost as exc:
            # The run stalled past the lock's lifetime (a pause, a stopped process): the
            # batch in hand was refused, those committed before stay collected and are
            # reported. The stall spent the budget, so the run ends; the next resumes.
            log.warning("GC lost the lock of tenant %r: %s", tenant, exc)
            return Outcome.PARTIAL
        except CorruptRecord as exc:
            # A spiral record, the total or a counter GC must change is corrupt: GC
            # cannot count on it. The tenant waits for a rebuild to quarantine it; the
            # other tenants are collected as usual.
            log.warning("GC passed over tenant %r: %s", tenant, exc)
            return Outcome.SKIPPED
        if progress.done:
            return Outcome.DONE
        if not held:  # the wait left no time for a batch
            return Outcome.PARTIAL if progress.touched else Outcome.OUT_OF_TIME
        # The hold ran its length, not the budget's: the stores waiting for the lock go
        # first (never past the budget: then the next turn ends the tenant's part).
        if time.perf_counter() + HANDOVER_S < budget.ends(costs):
            time.sleep(HANDOVER_S)


def _hold(ctx: Context, section: Section, progress: _Progress, costs: Costs,
          previous: Costs, hold_limit: float, budget: Budget, report: GcReport,
          counts: dict[str, int]) -> int:
    """Batches under one hold of the tenant's lock, each committed, until the tenant
    is done or the next batch would not end by the hold's end (`hold_limit`, or the
    budget's end if sooner; the hold's first: by the budget's end); how many ran."""
    held = 0
    while not progress.done:
        begun = time.perf_counter()
        run_ends = budget.ends(costs)
        hold_ends = min(hold_limit, run_ends)
        # Sized now, with the lock: what the wait took is known.
        batch = 1 if progress.forced else _size(costs, previous, progress.touched,
                                                hold_ends - begun)
        if batch == 0 and held == 0 and _size(costs, previous, progress.touched,
                                              run_ends - begun):
            # Batches slower than half a hold (a loaded machine, a batch cut short
            # at its time) still make one memory of progress per hold while the
            # budget lasts: otherwise the run ended there, whatever budget was left.
            batch = 1
        if batch == 0:
            break
        probe, progress.forced, held = progress.forced, False, held + 1
        handled = 0
        if progress.purge:
            handled = _purge_tombstones(ctx, section, batch)
            progress.purge = handled >= batch
        progress.touched = True
        over = section.state.memory_count - ctx.limits.max_memory_nodes
        # Tombstones purged take their share of the batch (but a run's first batch
        # collects a memory, if one is eligible, whatever it purged).
        limit = max(1 if probe else 0, batch - handled)
        # Sized by a prediction, ended by the clock: a batch whose staging runs past
        # the share of the budget's time left the whole batch was planned to fit in
        # (a jump, a GIL shared with storing threads) stages no more memories, and
        # commits those staged in the time the share left over. Past the hold's end
        # too, but not past a share of it: a hold is no budget (a lock's lifetime is
        # twice as long), and batches cut at half of each hold left every hold short
        # (a 10 s run took the lock 23 times in 20 holds' time).
        until = min(hold_ends, begun + (run_ends - begun) * BATCH_SHARE)
        chosen, collected, more = collect_lowest(ctx, section, over=over, limit=limit,
                                                 until=None if probe else until)
        section.commit()
        report.collected_ids += collected
        counts[section.tenant] = section.state.memory_count
        budget.last_batch = time.perf_counter()
        costs.observe(handled + chosen, budget.last_batch - begun)
        progress.done = not more and not progress.purge
    return held


def _size(costs: Costs, previous: Costs, touched: bool, left: float) -> int:
    """How many memories the next batch takes, `left` seconds before the deadline: as
    many as this tenant's batches (before its first: the previous tenant's) say fit in
    a share of `left`; a probe of one when the run has measured nothing yet."""
    measured = costs if touched else previous
    if not measured.batches:
        return 1
    return measured.fitting(left * BATCH_SHARE)


def _purge_tombstones(ctx: Context, section: Section, limit: int) -> int:
    """Forget up to `limit` tombstones whose time is up (no redelivery can come that
    late); how many went."""
    keys = section.keys
    now = ctx.clock()
    expired = [m for m, expiry in section.index_range(keys.tombstone_queue, limit)
               if expiry <= now]
    if expired:
        section.stage(*(w for m in expired for w in (Delete(keys.tombstone(m)),
                                                     IndexRemove(keys.tombstone_queue, m))))
        section.commit()
    return len(expired)


__all__ = ["rotated", "run"]
