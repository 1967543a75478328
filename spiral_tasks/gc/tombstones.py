"""Tombstones whose time is up: GC forgets them, and knows when the next one is due.

A tombstone keeps a collected memory's id from coming back (a late redelivery, a
resending producer) for the policy's tombstone TTL, a day by default; then GC forgets
it. Every run used to read the head of each tenant's tombstone queue to find the ones
due: on Redis one round trip of a 5 ms budget (a run of one batch is six or seven),
which nearly always found nothing, the earliest tombstone being hours from its time.
So an engine remembers, per tenant, the earliest expiry its last look found
(`PurgeTimes`) and looks again only once that time has come.

A remembered time can only be late, never early, so it is a hint that needs no lock
and no storage: a tombstone written after a look expires a whole TTL after it was
written, so after everything the look found (and after the look's own time plus the
TTL, which is what is remembered when it found the queue empty). A tombstone from a
process configured with a shorter TTL, or restored from a backup, is forgotten when
this engine next looks, later than due: it keeps an id out a little longer, never lets
one back in early. Runs racing in threads each remember a time that was true when they
looked, which is all a hint needs.
"""

from __future__ import annotations

from spiral_tasks.context import Context
from spiral_tasks.section import Section
from spiral_tasks.storage.base import Delete, IndexRemove


class PurgeTimes:
    """When each tenant's earliest tombstone expires, as this engine last saw it."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}

    def due(self, tenant: str, now: float) -> bool:
        """Whether a tombstone of `tenant` may be due at `now` (not looked yet: yes)."""
        return self._next.get(tenant, now) <= now

    def saw(self, tenant: str, next_expiry: float | None) -> None:
        """The look found the earliest tombstone left expiring at `next_expiry`
        (None: it does not know, look again next time)."""
        if next_expiry is None:
            self._next.pop(tenant, None)
        else:
            self._next[tenant] = next_expiry


def purge_expired(ctx: Context, section: Section, limit: int, times: PurgeTimes) -> int:
    """Forget up to `limit` tombstones whose time is up (no redelivery can come that
    late), committed; how many went. Looks only when `times` says one may be due."""
    keys = section.keys
    now = ctx.clock()
    if not times.due(keys.tenant, now):
        return 0
    head = section.index_range(keys.tombstone_queue, limit)
    expired = [m for m, expiry in head if expiry <= now]
    if expired:
        section.stage(*(w for m in expired for w in (Delete(keys.tombstone(m)),
                                                     IndexRemove(keys.tombstone_queue, m))))
        section.commit()
    if len(expired) < len(head):  # lowest first: the first one kept is the next due
        times.saw(keys.tenant, head[len(expired)][1])
    elif len(head) < limit:  # none left: the next one written expires a TTL from now
        times.saw(keys.tenant, now + ctx.gc.tombstone_ttl_s)
    else:  # all `limit` were due: more may be
        times.saw(keys.tenant, None)
    return len(expired)


__all__ = ["PurgeTimes", "purge_expired"]
