"""Removing memories: collect by id, and the eviction GC and full stores share.

A removed memory frees its slot, leaves its counters exact, and leaves a tombstone for
the policy's tombstone TTL, so a store of the same id redelivered later (late acks,
a resending producer) finds the tombstone and cannot bring it back. Its sigils' index
entries go in the same batch as its record (every one: a re-signed memory keeps its
old sigil's entry through the grace period), so its sigils stop working at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from spiral_tasks import events, gc, records
from spiral_tasks.context import Context
from spiral_tasks.errors import CorruptRecord
from spiral_tasks.model import Memory, Spiral
from spiral_tasks.section import Section
from spiral_tasks.security.sigils import index_name
from spiral_tasks.storage.base import Delete, Increment, IndexPut, IndexRemove, Put, Write

log = logging.getLogger(__name__)


def remove(ctx: Context, section: Section, memories: Sequence[Memory],
           stale_entries: Sequence[str] = (), *, announce: bool = False,
           audit_as: str = "collect", until: float | None = None) -> list[Memory]:
    """Stage the removal of `memories` (and drop the queue entries `stale_entries`, of
    memories already missing or whose records are corrupt); their spirals free their
    slots; the audit log names the operation `audit_as`. The caller commits. Those
    staged are returned: all of them, unless `until` (a `time.perf_counter()` time)
    passes first, when the rest are left as they are (at least one is staged)."""
    keys = section.keys
    now = ctx.clock()
    expires = now + ctx.gc.tombstone_ttl_s
    shrunk: dict[str, Spiral] = {}
    writes: list[Write] = [IndexRemove(keys.gc_queue, m) for m in stale_entries]
    keyring = ctx.sigils.current()
    staged: list[Memory] = []
    for memory in memories:
        if until is not None and staged and time.perf_counter() > until:
            break
        staged.append(memory)
        writes += [Delete(keys.sigil(index_name(sigil))) for sigil in sorted(
            keyring.sigils_of(keys.tenant, memory.id, memory.created, memory.sigil))]
        writes += [Delete(keys.memory(memory.id)),
                   Increment(keys.spiral_count(memory.spiral_id), -1),
                   IndexRemove(keys.gc_queue, memory.id),
                   Put(keys.tombstone(memory.id), expires),
                   IndexPut(keys.tombstone_queue, memory.id, expires)]
        if announce:
            writes.append(events.event(events.COLLECTED,
                                       {"id": memory.id, "tenant": keys.tenant}))
        spiral = shrunk.get(memory.spiral_id) or section.state.spirals.get(memory.spiral_id)
        if spiral is not None:
            shrunk[spiral.id] = spiral.without_node(
                memory.position.index, memory.depth, now, ctx.limits.spiral_turns)
    if staged:
        writes.append(Increment(keys.memory_count, -len(staged)))
        section.state.memory_count -= len(staged)
    for spiral in shrunk.values():
        section.put_spiral(spiral)
    section.stage(*writes)
    if staged:
        section.audit(audit_as, [m.id for m in staged])
    return staged


def collect_lowest(ctx: Context, section: Section, *, over: int, limit: int,
                   until: float | None = None) -> tuple[int, list[str], bool]:
    """Stage the removal of up to `limit` eligible memories from the head of the GC
    queue (see `gc.select`), staging no more once `until` (a `time.perf_counter()`
    time) has passed (see `remove`). Returns how many queue entries were handled
    (stale ones included), the ids of the memories removed, and whether more are
    eligible (one entry past the batch is looked at, so a caller knows it is done
    without another batch: another lock and round trips)."""
    keys = section.keys
    chosen = gc.select(section.index_range(keys.gc_queue, limit + 1), ctx.clock(), over)
    more = len(chosen) > limit
    chosen = chosen[:limit]
    if not chosen:
        return 0, [], more
    memories: list[Memory] = []
    stale: list[str] = []
    for memory_id, found in zip(chosen, section.read_many([keys.memory(m) for m in chosen]),
                                strict=True):
        try:
            if found is not None:
                memories.append(records.memory(keys.memory(memory_id), found))
                continue
        except CorruptRecord as exc:
            # Which spiral and slot it holds is unknown, so it cannot be removed
            # exactly: its queue entry goes (or it would stay at the head of every
            # batch) and the record stays, counted, for a rebuild to quarantine.
            log.warning("GC passed by a corrupt record: %s", exc)
        stale.append(memory_id)
    removed = remove(ctx, section, memories, stale, audit_as="gc", until=until)
    if len(removed) < len(memories):
        return len(removed) + len(stale), [m.id for m in removed], True
    return len(chosen), [m.id for m in removed], more


def collect(ctx: Context, section: Section, memory_id: str) -> bool:
    """Remove one memory by id (announced on `spiralmemory:collected`) and commit;
    False when there was none."""
    key = section.keys.memory(memory_id)
    data = section.get(key)
    if data is not None:
        remove(ctx, section, [records.memory(key, data)], announce=True)
    section.commit(final=True)
    return data is not None
