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
run lets the stores of its process that wait for the lock take it first (waiting
for them, not for a fixed time: a woken thread may not run for ms on a loaded
machine), and stays away from the lock for `HANDOVER_S` where waiters may be in other
processes, so a store waiting behind a hold gets its turn then, not after the run.

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
import time
from collections.abc import Sequence
from dataclasses import dataclass

from spiral_tasks import events
from spiral_tasks.collect import collect_lowest
from spiral_tasks.context import Context
from spiral_tasks.errors import CorruptRecord, LockLost, LockTimeout
from spiral_tasks.gc.budget import Budget, Closings, Costs
from spiral_tasks.gc.policy import GcReport
from spiral_tasks.gc.tombstones import PurgeTimes, purge_expired
from spiral_tasks.keys import GC_CURSOR_KEY, TenantKeys
from spiral_tasks.section import Section, Sections, StateUse

log = logging.getLogger(__name__)

#: The share of the time left one batch may be planned to take: a batch twice as slow
#: as predicted (a descheduled thread, a slow round trip) still ends in time.
BATCH_SHARE = 0.5
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
#: The longest a run waits between two holds for the threads of its own process that
#: were waiting for the lock to take it (`Coordinator.let_waiters_in`): on a machine
#: whose other processes keep the cores busy, a woken waiter may not run for several
#: ms, far beyond `HANDOVER_S`; one waiter descheduled for longer costs the run this,
#: and the budget bounds it too.
MAX_HANDOVER_S = 0.02


def rotated(tenants: Sequence[str], cursor: object) -> list[str]:
    """`tenants` (sorted) starting after `cursor`, wrapping around."""
    if not isinstance(cursor, str):
        return list(tenants)
    start = bisect.bisect_right(tenants, cursor)
    return [*tenants[start:], *tenants[:start]]


def run(ctx: Context, sections: Sections, tenants: Sequence[str], budget_ms: float, *,
        resume: bool, closings: Closings | None = None,
        purges: PurgeTimes | None = None) -> GcReport:
    """GC `tenants` within `budget_ms`. `resume`: start after the stored cursor and move
    it (a run over every tenant); otherwise visit `tenants` as given. `closings`: the
    engine's measure of its runs' closing steps (see `Closings`), which this run's
    closing adds to; `purges`: when the engine's runs last saw each tenant's next
    tombstone due (see `tombstones`)."""
    storage = sections.storage
    started = time.perf_counter()
    closings = closings if closings is not None else Closings()
    purges = purges if purges is not None else PurgeTimes()
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
                          counts, purges, first_of_run=position == 0)
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
            counts: dict[str, int], purges: PurgeTimes, first_of_run: bool) -> Outcome:
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
                # A lock that expires lives from when the request that took it was
                # sent, not from its reply: a reply slow to come (the process
                # descheduled, 8-40 ms on a loaded machine) came out of the slack, and
                # a 40 ms lock was lost in holds planned at 20.
                taken = section.fence.taken_at
                held, let_go = _hold(ctx, section, progress, costs, previous,
                                     (entered if taken is None else taken) + hold_s,
                                     budget, report, counts, purges)
                if not let_go:
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
        _hand_over(sections, tenant, budget.ends(costs))


def _hand_over(sections: Sections, tenant: str, run_ends: float) -> None:
    """The hold ran its length, not the budget's: the stores waiting for the lock go
    first. Those the coordinator knows of (threads of this process) are waited for until
    they have taken it, for at most `MAX_HANDOVER_S`; others (another process's) get
    `HANDOVER_S` to take it. Never past `run_ends`: then the next turn ends the
    tenant's part."""
    now = time.perf_counter()
    if sections.coordinator.let_waiters_in(tenant, min(run_ends, now + MAX_HANDOVER_S)):
        return
    if time.perf_counter() + HANDOVER_S < run_ends:
        time.sleep(HANDOVER_S)


def _hold(ctx: Context, section: Section, progress: _Progress, costs: Costs,
          previous: Costs, hold_limit: float, budget: Budget, report: GcReport,
          counts: dict[str, int], purges: PurgeTimes) -> tuple[int, bool]:
    """Batches under one hold of the tenant's lock, each committed, until the tenant
    is done or the next batch would not end by the hold's end (`hold_limit`, or the
    budget's end if sooner; the hold's first: by the budget's end): how many ran, and
    whether the last one's commit let the lock go.

    A batch that is the hold's last as far as can be told before it commits (the
    tenant is done, or no batch of one would fit after it: `_room_after`) commits as
    final, which lets the lock go in the same round trip: on Redis a run of one batch
    made seven, and the release was one of them."""
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
            return held, False
        probe, progress.forced, held = progress.forced, False, held + 1
        handled = 0
        if progress.purge:
            handled = purge_expired(ctx, section, batch, purges)
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
        progress.done = not more and not progress.purge
        last = progress.done or not _room_after(costs, begun, hold_ends)
        section.commit(final=last)
        report.collected_ids += collected
        counts[section.tenant] = section.state.memory_count
        budget.last_batch = time.perf_counter()
        costs.observe(handled + chosen, budget.last_batch - begun)
        if last:
            return held, True
    return held, False


def _room_after(costs: Costs, begun: float, ends: float) -> bool:
    """Whether a batch of one may still fit before `ends` after the batch begun at
    `begun` (staged, not yet committed) commits: judged as `_size` will judge it then,
    with the commit taken as one round trip and, before the tenant's first batch was
    measured, a batch of one as long as this one."""
    committed = time.perf_counter() + costs.round_trip
    one = costs.predict(1) if costs.batches else committed - begun
    return (ends - committed) * BATCH_SHARE >= one


def _size(costs: Costs, previous: Costs, touched: bool, left: float) -> int:
    """How many memories the next batch takes, `left` seconds before the deadline: as
    many as this tenant's batches (before its first: the previous tenant's) say fit in
    a share of `left`; a probe of one when the run has measured nothing yet."""
    measured = costs if touched else previous
    if not measured.batches:
        return 1
    return measured.fitting(left * BATCH_SHARE)


__all__ = ["rotated", "run"]
