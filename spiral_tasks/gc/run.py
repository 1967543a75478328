"""A GC run: eligible memories collected in short locked batches, within a time budget.

Each batch holds the tenant's lock only briefly: it is sized from the cost per memory
measured so far in this run to take a third of the time left, and a batch that would
not finish in time is not started.

Fair across tenants: a run over every tenant starts after the tenant where the last
run stopped (a cursor kept in storage, `meta:gc_cursor`) and walks the tenants in
name order from there, wrapping around. The cursor moves past every tenant the run
touched, finished or not, and every run works on at least the tenant it starts with,
so with N tenants each one is reached within N runs whatever the budget (in practice a
run covers many). Without the cursor, runs that always started from the first tenant
name never reached the later ones once the budget ran out earlier. A tenant whose lock
stays busy for a quarter of the time left is passed over (its turn comes in the next
rotation) rather than spending the run's budget waiting at it; so is a tenant whose
spirals, total or counters are corrupt (logged; a rebuild quarantines them), and a
corrupt memory record at the head of the queue loses its queue entry rather than
block the ones behind it. A run's first
batch starts even when the budget is already spent (a tiny budget, a slow round
trip), so no run is wasted.
"""

from __future__ import annotations

import bisect
import enum
import logging
import time
from collections.abc import Sequence

from spiral_tasks import events
from spiral_tasks.collect import collect_lowest
from spiral_tasks.context import Context
from spiral_tasks.errors import CorruptRecord, LockTimeout
from spiral_tasks.gc.policy import GcReport
from spiral_tasks.keys import GC_CURSOR_KEY, TenantKeys
from spiral_tasks.section import Section, Sections, StateUse
from spiral_tasks.storage.base import Delete, IndexRemove

log = logging.getLogger(__name__)

#: GC batches: the first is small, to measure; none holds the lock for long.
FIRST_BATCH = 8
MAX_BATCH = 256
#: The longest a run waits for one tenant's lock, as a share of the time left.
LOCK_WAIT_SHARE = 0.25


def rotated(tenants: Sequence[str], cursor: object) -> list[str]:
    """`tenants` (sorted) starting after `cursor`, wrapping around."""
    if not isinstance(cursor, str):
        return list(tenants)
    start = bisect.bisect_right(tenants, cursor)
    return [*tenants[start:], *tenants[:start]]


def run(ctx: Context, sections: Sections, tenants: Sequence[str], budget_ms: float, *,
        resume: bool) -> GcReport:
    """GC `tenants` within `budget_ms`. `resume`: start after the stored cursor and move
    it (a run over every tenant); otherwise visit `tenants` as given."""
    storage = sections.storage
    started = time.perf_counter()
    deadline = started + budget_ms / 1000
    report = GcReport(time_budget_ms=budget_ms)
    # Read tolerantly: a corrupt cursor is no cursor (it is written again below).
    order = (rotated(tenants, storage.read_many([GC_CURSOR_KEY])[0]) if resume
             else list(tenants))
    last_touched = None
    for position, tenant in enumerate(order):
        outcome = _tenant(ctx, sections, tenant, deadline, report,
                          first_of_run=position == 0)
        if outcome is not Outcome.OUT_OF_TIME:
            last_touched = tenant
        if outcome is not Outcome.DONE:
            report.complete = False
        if outcome is Outcome.OUT_OF_TIME:
            break
    if resume and last_touched is not None:
        # A hint, not tenant data: two runs racing to set it cost fairness, not safety.
        storage.set(GC_CURSOR_KEY, last_touched)
    counts = storage.read_many([TenantKeys(t).memory_count for t in tenants])
    report.remaining = sum(c for c in counts if isinstance(c, int))
    report.duration_ms = (time.perf_counter() - started) * 1000
    storage.apply([events.event(events.GC_TICK, report.to_json())])
    return report


class Outcome(enum.Enum):
    #: Every eligible memory of the tenant was collected.
    DONE = "done"
    #: The tenant's lock stayed busy (a rebuild, a hot tenant): passed over, it gets
    #: its turn in the next rotation, and the run goes on with the next tenant.
    SKIPPED = "skipped"
    #: The budget ran out (after some batches of the tenant, or before any).
    OUT_OF_TIME = "out of time"


def _tenant(ctx: Context, sections: Sections, tenant: str, deadline: float,
            report: GcReport, first_of_run: bool) -> Outcome:
    """GC one tenant in batches. The first batch of a run starts whatever the budget:
    every run makes progress."""
    batch, per_item, touched = FIRST_BATCH, 0.0, False
    while True:
        started = time.perf_counter()
        if started + per_item * batch > deadline and not (first_of_run and not touched):
            return Outcome.OUT_OF_TIME
        try:
            with sections.enter(tenant, state=StateUse.LOAD,
                                timeout_s=(deadline - started) * LOCK_WAIT_SHARE) as section:
                if not touched:
                    _purge_tombstones(ctx, section)
                touched = True
                over = section.state.memory_count - ctx.limits.max_memory_nodes
                chosen, collected = collect_lowest(ctx, section, over=over, limit=batch)
                section.commit(final=True)
                report.collected_ids += collected
        except LockTimeout:
            return Outcome.SKIPPED
        except CorruptRecord as exc:
            # A spiral record, the total or a counter GC must change is corrupt: GC
            # cannot count on it. The tenant waits for a rebuild to quarantine it; the
            # other tenants are collected as usual.
            log.warning("GC passed over tenant %r: %s", tenant, exc)
            return Outcome.SKIPPED
        if chosen < batch:
            return Outcome.DONE
        now = time.perf_counter()
        per_item = max(per_item, (now - started) / batch)
        batch = max(1, min(MAX_BATCH, int((deadline - now) / 3 / per_item)))


def _purge_tombstones(ctx: Context, section: Section) -> None:
    """Forget tombstones whose time is up (no redelivery can come that late)."""
    keys = section.keys
    now = ctx.clock()
    expired = [m for m, expiry in section.index_range(keys.tombstone_queue, MAX_BATCH)
               if expiry <= now]
    if expired:
        section.stage(*(w for m in expired for w in (Delete(keys.tombstone(m)),
                                                     IndexRemove(keys.tombstone_queue, m))))
        section.commit()


__all__ = ["rotated", "run"]
