"""Storing: the requests combined into one batch, served in one critical section.

Placement, capacity, eviction and idempotency are decided here, against the section's
view of the tenant, which includes what this batch already staged or committed. When
the tenant is full, what is staged is committed first and GC makes room under the lock
already held; the requests after that see the evictions (a resent id that was just
evicted finds its tombstone, not a record to create again).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from spiral_tasks import events, gc, geometry, records, validation
from spiral_tasks.audit import actor as audit_actor
from spiral_tasks.audit.actor import Actor
from spiral_tasks.collect import collect_lowest
from spiral_tasks.combining import Pending
from spiral_tasks.context import Context
from spiral_tasks.errors import CapacityExceeded, CorruptRecord, InvalidArgument
from spiral_tasks.frozen import quick_init
from spiral_tasks.keys import TenantKeys
from spiral_tasks.model import PROTECTED_DEPTHS, Depth, Memory, Spiral
from spiral_tasks.results import StoreResult
from spiral_tasks.section import Section
from spiral_tasks.security.sigils import index_name
from spiral_tasks.storage.base import CheckedPut, Increment, IndexPut, Put, Write

#: GC's chance to make room when every spiral is full: at most this many memories.
ROOM_BATCH = 32


@quick_init
@dataclass(frozen=True)
class StoreRequest:
    """A validated store request."""

    tenant: str
    content: str
    kind: str
    depth: Depth
    associations: tuple[str, ...]
    memory_id: str | None
    #: Who asked, for the audit log: captured in the caller's thread, since another
    #: thread's batch may commit this store (`combining`).
    actor: Actor = field(compare=False)

    @classmethod
    def validated(cls, content: Any, type: Any, depth: Any, associations: Any,
                  tenant: Any, memory_id: Any) -> StoreRequest:
        # Positional, in the fields' order (tenant, content, kind, depth, associations,
        # memory_id, actor): keywords would cost a dict per store.
        return cls(
            validation.name("tenant", tenant),
            validation.content(content),
            validation.name("type", type),
            validation.depth(depth),
            validation.associations(associations),
            None if memory_id is None else validation.memory_id("memory_id", memory_id),
            audit_actor.current(),
        )


StorePending = Pending[StoreRequest, StoreResult]


def expected(keys: TenantKeys, batch: Sequence[StorePending]) -> tuple[list[str], list[str]]:
    """The keys the batch will ask about, split by what the usual answer is: absent
    (the record and tombstone of every id it names: a new memory) and present (the
    record of every memory it links to). An optimistic commit assumes these answers;
    the locked way reads them in the lock's own round trip."""
    if not any(p.payload.memory_id or p.payload.associations for p in batch):
        return [], []  # most stores: nothing to ask about
    given = dict.fromkeys(p.payload.memory_id for p in batch if p.payload.memory_id)
    linked = dict.fromkeys(a for p in batch for a in p.payload.associations
                           if a not in given)
    return ([keys.memory(i) for i in given] + [keys.tombstone(i) for i in given],
            [keys.memory(i) for i in linked])


class StoreBatch:
    """One batch's decisions, and the answers waiting for the commit that makes them
    true."""

    def __init__(self, ctx: Context, section: Section) -> None:
        self.ctx = ctx
        self.section = section
        self._waiting: list[tuple[StorePending, StoreResult]] = []
        self._created = 0
        #: New nodes per spiral since the last commit: its counter moves once per commit.
        self._grown: dict[str, int] = {}

    def serve(self, batch: Iterable[StorePending]) -> None:
        """Answer every request. A request's own bad input or a full tenant fails only
        that request; anything else (a lost lock, storage down) propagates, and the
        combiner fails every request not yet answered."""
        for pending in batch:
            try:
                self._stage(pending)
            except (InvalidArgument, CapacityExceeded) as exc:
                pending.fail(exc)
        self._flush(final=True)

    def _stage(self, pending: StorePending) -> None:
        request = pending.payload
        if request.memory_id is not None:
            try:
                existing = self._existing(request.memory_id)
            except CorruptRecord as exc:  # this request's own: nothing staged for it
                pending.fail(exc)
                return
            if existing is not None:
                self._waiting.append((pending, existing))
                return
        if request.associations:  # most stores link to nothing: no call
            self._check_associations(request.associations)
        now = self.ctx.clock()
        if now - now != 0.0:  # inf or nan: the record is written unchecked (CheckedPut)
            raise ValueError(f"the clock says {now!r}, which is no time")
        spiral = self._room_for(request.depth, now)
        memory_id = request.memory_id or self.ctx.new_id()
        slot = spiral.next_slot()
        turns = self.ctx.limits.spiral_turns
        memory = Memory(  # positional, in the fields' order: see `Spiral._derived`
            memory_id, request.tenant, request.content, request.kind, request.depth,
            self.ctx.sigils.current().sign(request.tenant, memory_id, now),  # sigil
            spiral.id, geometry.place(spiral.type, slot, turns),  # spiral_id, position
            request.associations, now, now,  # associations, created, last_accessed
            0, gc.INITIAL_STRENGTH,  # access_count, strength
        )
        result = StoreResult(memory_id, request.tenant, memory, created=True)
        self._stage_memory(memory, spiral.with_node(slot, request.depth, now, turns), result)
        self.section.audit("store", [memory_id], request.actor)
        self._waiting.append((pending, result))

    def _existing(self, memory_id: str) -> StoreResult | None:
        """The answer for an id that is stored, or collected (its tombstone): as this
        section sees them, including this batch's own stores and evictions."""
        keys, tenant = self.section.keys, self.section.tenant
        # A tombstone collects its id whatever it holds; a record must be readable to
        # answer with (CorruptRecord otherwise).
        record, tombstone = self.section.read_many([keys.memory(memory_id),
                                                    keys.tombstone(memory_id)])
        if record is not None:
            return StoreResult(memory_id, tenant, records.memory(keys.memory(memory_id),
                                                                 record), created=False)
        if tombstone is not None:
            return StoreResult(memory_id, tenant, None, created=False)
        return None

    def _check_associations(self, associations: tuple[str, ...]) -> None:
        if not associations:
            return
        keys = self.section.keys
        # Existence is all a link needs: a corrupt record still names a memory.
        found = self.section.read_many([keys.memory(a) for a in associations])
        missing = [a for a, record in zip(associations, found, strict=True)
                   if record is None]
        if missing:
            raise InvalidArgument("associations", f"no memory {validation.ids(missing)} in "
                                  f"tenant {self.section.tenant!r}")

    def _stage_memory(self, memory: Memory, grown: Spiral, result: StoreResult) -> None:
        keys, section = self.section.keys, self.section
        section.put_spiral(grown)
        section.state.memory_count += 1
        # Every field of the record was validated or computed here: checked as built.
        writes: list[Write] = [CheckedPut(keys.memory(memory.id), memory.to_json()),
                               Put(keys.sigil(index_name(memory.sigil)), memory.id)]
        if section.publishes:
            writes.append(events.event(events.STORED, result.to_json()))
        if memory.depth not in PROTECTED_DEPTHS:  # `depth.protected`, a call fewer
            writes.append(IndexPut(keys.gc_queue, memory.id,
                                   gc.retain_until(memory, self.ctx.gc.retention_s)))
        section.stage(*writes)
        self._created += 1
        self._grown[grown.id] = self._grown.get(grown.id, 0) + 1

    def _flush(self, final: bool = False) -> None:
        """Commit what is staged and give the waiting requests their answers.

        The commit ends by counting its new memories (`store_ticks`); the store whose
        count lands on a multiple of the GC trigger interval is told so (`gc_due`),
        whichever process made it.
        """
        created, waiting = self._created, self._waiting
        if created:
            keys = self.section.keys
            self.section.ensure_registered()
            self.section.stage(*[Increment(keys.spiral_count(spiral_id), count)
                                 for spiral_id, count in self._grown.items()],
                               Increment(keys.memory_count, created),
                               Increment(keys.store_ticks, created))
        self._created, self._waiting, self._grown = 0, [], {}
        last = self.section.commit(final=final)
        interval = self.ctx.gc.trigger_interval
        tick = (last or 0) - created  # this commit's stores are ticks tick+1 .. last
        for pending, answer in waiting:
            if answer.created:
                tick += 1
            due = answer.created and tick % interval == 0
            pending.finish(replace(answer, gc_due=True) if due else answer)

    def _room_for(self, depth: Depth, now: float) -> Spiral:
        """The spiral a new memory goes to, making room first when the tenant is full."""
        state, limits = self.section.state, self.ctx.limits
        limit = limits.max_memory_nodes
        if state.memory_count >= limit:
            self._flush()
            over = state.memory_count - limit + 1
            collect_lowest(self.ctx, self.section, over=over, limit=over)
            if state.memory_count >= limit:
                raise CapacityExceeded(
                    f"tenant {self.section.tenant!r} holds {state.memory_count} memories, "
                    f"the limit is {limit}, and none is collectable")
        spiral = state.open_spirals().choose(self.section.tenant, len(state.spirals), depth,
                                             limits.max_memory_spirals, now)
        if spiral is None:
            self._flush()
            collect_lowest(self.ctx, self.section, over=0, limit=ROOM_BATCH)
            spiral = state.open_spirals().choose(self.section.tenant, len(state.spirals),
                                                 depth, limits.max_memory_spirals, now)
        if spiral is None:
            raise CapacityExceeded(
                f"all {limits.max_memory_spirals} spirals of tenant "
                f"{self.section.tenant!r} are full and GC found nothing collectable")
        return spiral
