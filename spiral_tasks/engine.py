"""SpiralMemory: store, retrieve, collect, gc, rebuild_stats and stats.

The engine is pure Python over two seams: `Storage` (where records live) and
`Coordinator` (what serializes a tenant's critical sections and commits their
writes). It imports neither Celery nor any client library, so the same engine runs
in a test, a CLI or a worker.

Every operation takes the tenant's lock, decides from the tenant's state (cached in
this process, reloaded from storage when the coordinator says it may be stale), and
commits all its writes as one atomic batch. The cache changes only after a commit
succeeded, so a failed commit leaves nothing half-done, in storage or in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from spiral_tasks import events, gc, geometry, placement, rebuild, validation
from spiral_tasks.combining import Combiner, Pending
from spiral_tasks.config import GcPolicy, Limits
from spiral_tasks.coordination.base import NO_GENERATION, Coordinator, Fence, Snapshot
from spiral_tasks.errors import CapacityExceeded, InvalidArgument, LockTimeout, SpiralError
from spiral_tasks.gc import GcReport
from spiral_tasks.keys import SIGIL_SECRET_KEY, TENANTS_PREFIX, TenantKeys, tenant_marker
from spiral_tasks.model import Depth, Memory, Spiral
from spiral_tasks.rebuild import RebuildReport
from spiral_tasks.results import StoreResult, TenantStats
from spiral_tasks.storage.base import (
    Delete,
    Increment,
    IndexPut,
    IndexRemove,
    Put,
    Storage,
    Write,
)

#: Rebuild corrections are committed in chunks so one Redis script stays small.
REBUILD_CHUNK = 5000
#: GC batches: the first is small, to measure; none holds the lock for long.
GC_FIRST_BATCH = 8
GC_MAX_BATCH = 256


@dataclass(frozen=True)
class _StoreArgs:
    """A validated store request."""

    tenant: str
    content: str
    kind: str
    depth: Depth
    associations: tuple[str, ...]
    memory_id: str | None


@dataclass
class _StagedStores:
    """Stores decided but not yet committed, and the answers waiting on the commit."""

    writes: list[Write] = field(default_factory=list)
    spirals: dict[str, Spiral] = field(default_factory=dict)
    memories: dict[str, Memory] = field(default_factory=dict)
    answers: list[tuple[Pending[_StoreArgs, StoreResult], StoreResult]] = field(
        default_factory=list)
    created: int = 0

    def answer(self, pending: Pending[_StoreArgs, StoreResult], result: StoreResult) -> None:
        self.answers.append((pending, result))

    def clear(self) -> None:
        self.writes, self.spirals, self.memories, self.answers = [], {}, {}, []
        self.created = 0


@dataclass
class _TenantState:
    """A tenant's spirals and total as of `generation` (None: single process)."""

    spirals: dict[str, Spiral] = field(default_factory=dict)
    memory_count: int = 0
    generation: int | None = None


@dataclass(frozen=True)
class _Known:
    """What storage holds for the ids a store batch names."""

    records: dict[str, Any]
    tombstoned: frozenset[str]


def _named_ids(batch: Sequence[Pending[_StoreArgs, StoreResult]]
               ) -> tuple[list[str], list[str]]:
    """The memory ids a store batch gives, and the other ids it links to."""
    given = list(dict.fromkeys(p.payload.memory_id for p in batch
                               if p.payload.memory_id is not None))
    linked = list(dict.fromkeys(a for p in batch for a in p.payload.associations
                                if a not in given))
    return given, linked


def _new_id() -> str:
    return uuid.uuid4().hex


class SpiralMemory:
    def __init__(
        self,
        storage: Storage,
        coordinator: Coordinator,
        limits: Limits | None = None,
        gc_policy: GcPolicy | None = None,
        *,
        sigil_secret: str | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self.storage = storage
        self.limits = limits or Limits()
        self.gc_policy = gc_policy or GcPolicy()
        self.coordinator = coordinator
        self._clock = clock
        self._new_id = new_id
        self._sigil_key = self._load_sigil_key(sigil_secret)
        self._states: dict[str, _TenantState] = {}
        self._registered: set[str] = set()
        self._stores: Combiner[_StoreArgs, StoreResult] = Combiner(self._store_batch)

    # --- public operations ----------------------------------------------------------
    def store(
        self,
        content: str,
        type: str = "general",
        depth: str = "shallow",
        associations: Iterable[str] | None = None,
        tenant: str = "default",
        memory_id: str | None = None,
    ) -> StoreResult:
        """Store a memory; with `memory_id` given, storing it again changes nothing.

        Concurrent stores into one tenant are combined: the caller holding the lock
        commits every queued store in one batch (see `combining`).
        """
        args = _StoreArgs(
            tenant=validation.name("tenant", tenant),
            content=validation.content(content),
            kind=validation.name("type", type),
            depth=validation.depth(depth),
            associations=validation.associations(associations),
            memory_id=None if memory_id is None
            else validation.memory_id("memory_id", memory_id),
        )
        return self._stores.run(args.tenant, args)

    def retrieve(self, memory_id: str, tenant: str = "default") -> Memory | None:
        """The memory, with its access time, count and strength updated in storage."""
        tenant = validation.name("tenant", tenant)
        memory_id = validation.memory_id("memory_id", memory_id)
        keys = TenantKeys(tenant)
        with self.coordinator.critical(tenant, read=[keys.memory(memory_id)]) as fence:
            data = fence.read[keys.memory(memory_id)]
            if data is None:
                return None
            memory = Memory.from_json(data).accessed(self._clock())
            writes: list[Write] = [Put(keys.memory(memory_id), memory.to_json())]
            if not memory.depth.protected:
                writes.append(IndexPut(keys.gc_queue, memory_id,
                                       gc.retain_until(memory, self.gc_policy.retention_s)))
            self._commit(tenant, fence, writes, final=True)
        return memory

    def collect(self, memory_id: str, tenant: str = "default") -> bool:
        """Delete a memory; False when there was none."""
        tenant = validation.name("tenant", tenant)
        memory_id = validation.memory_id("memory_id", memory_id)
        keys = TenantKeys(tenant)
        with self.coordinator.critical(tenant, read=[keys.memory(memory_id)],
                                       snapshot=self._snapshot(tenant)) as fence:
            state = self._state(tenant, fence)
            data = fence.read[keys.memory(memory_id)]
            if data is None:
                return False
            self._remove(keys, state, fence, [Memory.from_json(data)], [], final=True,
                         announce=True)
        return True

    def gc(self, time_budget_ms: float | None = None, tenant: str | None = None) -> GcReport:
        """Collect eligible memories, least valuable first, within the time budget."""
        budget_ms = (self.gc_policy.time_budget_ms if time_budget_ms is None
                     else validation.time_budget_ms(time_budget_ms))
        tenants = self.tenants() if tenant is None else [validation.name("tenant", tenant)]
        started = time.perf_counter()
        deadline = started + budget_ms / 1000
        report = GcReport()
        for name in tenants:
            if not self._gc_tenant(name, deadline, report):
                report.complete = False
                break
        counts = self.storage.get_many([TenantKeys(t).memory_count for t in tenants])
        report.remaining = sum(c for c in counts if isinstance(c, int))
        report.duration_ms = (time.perf_counter() - started) * 1000
        self.storage.apply([events.event(events.GC_TICK, report.to_json())])
        return report

    def rebuild_stats(self, tenant: str | None = None) -> RebuildReport:
        """Recompute every spiral and counter from the node records in storage."""
        tenants = self.tenants() if tenant is None else [validation.name("tenant", tenant)]
        started = time.perf_counter()
        report = RebuildReport()
        for name in tenants:
            with self.coordinator.critical(name) as fence:
                self._states.pop(name, None)
                part, writes = rebuild.rebuild_tenant(
                    self.storage, name, self.limits, self.gc_policy, self._clock(),
                    heartbeat=fence.extend)
                chunks = range(0, len(writes), REBUILD_CHUNK)
                for start in chunks:
                    fence.extend()
                    fence.commit(writes[start:start + REBUILD_CHUNK],
                                 final=start == chunks[-1])
            report.extend(part)
        report.duration_ms = (time.perf_counter() - started) * 1000
        self.storage.apply([events.event(events.REBUILD_STATS, report.to_json())])
        return report

    def stats(self, tenant: str = "default") -> TenantStats:
        tenant = validation.name("tenant", tenant)
        keys = TenantKeys(tenant)
        with self.coordinator.critical(tenant):
            spirals = sorted((Spiral.from_json(v) for _, v in self.storage.scan(keys.spirals)),
                             key=lambda s: s.created)
            total = self.storage.get(keys.memory_count)
            records = len(self.storage.keys(keys.memories))
        return TenantStats(tenant, total if isinstance(total, int) else 0, records,
                           tuple(spirals))

    def tenants(self) -> list[str]:
        return sorted(k[len(TENANTS_PREFIX):] for k in self.storage.keys(TENANTS_PREFIX))

    def close(self) -> None:
        self.storage.close()

    # --- state ----------------------------------------------------------------------
    def _snapshot(self, tenant: str) -> Snapshot:
        """What to read on entering a tenant's section if this process's cache of it
        is missing or stale: its spirals and its total."""
        keys = TenantKeys(tenant)
        cached = self._states.get(tenant)
        return Snapshot(prefix=keys.spirals, keys=(keys.memory_count,),
                        unless_generation=cached.generation if cached else NO_GENERATION)

    def _state(self, tenant: str, fence: Fence) -> _TenantState:
        """The tenant's state: the cached one while it is current, else the snapshot
        taken on entering the section (every section that needs state asks for one
        with `_snapshot`, so a stale or missing cache always comes with it)."""
        state = self._states.get(tenant)
        if state is not None and state.generation == fence.generation:
            return state
        keys = TenantKeys(tenant)
        found = fence.snapshot
        assert found is not None, "a section that reads state must ask for a snapshot"
        spirals = [v for k, v in found.items() if k.startswith(keys.spirals)]
        total = found.get(keys.memory_count)
        state = _TenantState(
            spirals={v["id"]: Spiral.from_json(v) for v in spirals if v is not None},
            memory_count=total if isinstance(total, int) else 0,
            generation=fence.generation,
        )
        self._states[tenant] = state
        return state

    def _commit(self, tenant: str, fence: Fence, writes: Sequence[Write],
                final: bool = False) -> int | None:
        """Commit through the fence; a cache that was current stays current (the
        caller updates it with what it just wrote)."""
        before = fence.generation
        last = fence.commit(writes, final=final)
        state = self._states.get(tenant)
        if state is not None and state.generation == before:
            state.generation = fence.generation
        return last

    def _load_sigil_key(self, configured: str | None) -> bytes:
        if configured:
            return configured.encode()
        stored = self.storage.get(SIGIL_SECRET_KEY)
        if not isinstance(stored, str):
            stored = secrets.token_hex(32)
            self.storage.set(SIGIL_SECRET_KEY, stored)
        return stored.encode()

    def _sigil(self, tenant: str, memory_id: str) -> str:
        """An unguessable token: a keyed HMAC of tenant and id, never of the content."""
        message = f"{tenant}\x00{memory_id}".encode()
        return hmac.new(self._sigil_key, message, hashlib.sha256).hexdigest()[:32]

    # --- storing ----------------------------------------------------------------------
    def _store_batch(self, tenant: str,
                     batch: list[Pending[_StoreArgs, StoreResult]]) -> None:
        """Serve queued stores in one critical section with as few commits as possible.

        A request's own bad input fails only that request; anything else (lock
        timeout, storage error) propagates and the combiner fails the rest.
        """
        keys = TenantKeys(tenant)
        staged = _StagedStores()
        given, linked = _named_ids(batch)
        reads = ([keys.memory(i) for i in given] + [keys.tombstone(i) for i in given]
                 + [keys.memory(i) for i in linked])
        with self.coordinator.critical(tenant, read=reads,
                                       snapshot=self._snapshot(tenant)) as fence:
            state = self._state(tenant, fence)
            known = _Known(
                records={i: fence.read[keys.memory(i)] for i in (*given, *linked)},
                tombstoned=frozenset(i for i in given
                                     if fence.read[keys.tombstone(i)] is not None))
            for pending in batch:
                try:
                    self._stage_store(keys, fence, state, staged, known, pending)
                except SpiralError as exc:
                    pending.fail(exc)
            self._flush(keys, fence, state, staged, final=True)

    def _stage_store(self, keys: TenantKeys, fence: Fence, state: _TenantState,
                     staged: _StagedStores, known: _Known,
                     pending: Pending[_StoreArgs, StoreResult]) -> None:
        args = pending.payload
        mid = args.memory_id
        if mid is not None:
            if mid in staged.memories:
                staged.answer(pending, StoreResult(mid, keys.tenant, staged.memories[mid],
                                                   created=False))
                return
            if known.records.get(mid) is not None:
                pending.finish(StoreResult(mid, keys.tenant,
                                           Memory.from_json(known.records[mid]), False))
                return
            if mid in known.tombstoned:
                pending.finish(StoreResult(mid, keys.tenant, None, created=False))
                return
        missing = [a for a in args.associations
                   if known.records.get(a) is None and a not in staged.memories]
        if missing:
            raise InvalidArgument("associations", f"no memory {', '.join(missing)} in "
                                  f"tenant {keys.tenant!r}")
        now = self._clock()
        spiral = self._room_for(keys, fence, state, staged, known, args.depth, now)
        mid = mid or self._new_id()
        slot = spiral.next_slot()
        memory = Memory(
            id=mid, tenant=keys.tenant, content=args.content, type=args.kind,
            depth=args.depth, sigil=self._sigil(keys.tenant, mid), spiral_id=spiral.id,
            position=geometry.place(spiral.type, slot, self.limits.spiral_turns),
            associations=args.associations, created=now, last_accessed=now,
            access_count=0, strength=gc.INITIAL_STRENGTH,
        )
        grown = spiral.with_node(slot, args.depth, now, self.limits.spiral_turns)
        staged.writes += [
            Put(keys.memory(mid), memory.to_json()),
            Put(keys.sigil(memory.sigil), mid),
            Increment(keys.spiral_count(grown.id), 1),
            Increment(keys.memory_count, 1),
        ]
        if not args.depth.protected:
            staged.writes.append(IndexPut(keys.gc_queue, mid, gc.retain_until(
                memory, self.gc_policy.retention_s)))
        staged.spirals[grown.id] = grown
        staged.memories[mid] = memory
        result = StoreResult(mid, keys.tenant, memory, created=True)
        staged.writes.append(events.event(events.STORED, result.to_json()))
        staged.answer(pending, result)
        staged.created += 1

    def _flush(self, keys: TenantKeys, fence: Fence, state: _TenantState,
               staged: _StagedStores, final: bool = False) -> None:
        """Commit the staged stores (each spiral written once, in its final state).

        The batch ends by counting its stores; the store that completes a GC trigger
        interval is told so (`gc_due`), whichever process made it.
        """
        if not staged.answers:
            return
        writes = staged.writes + [Put(keys.spiral(s.id), s.to_json())
                                  for s in staged.spirals.values()]
        if keys.tenant not in self._registered:
            writes.append(Put(tenant_marker(keys.tenant), 1))
        writes.append(Increment(keys.store_ticks, staged.created))
        spirals, count, answers = staged.spirals, len(staged.memories), staged.answers
        staged.clear()  # if the commit fails, the batch's callers get its error
        ticks = self._commit(keys.tenant, fence, writes, final=final) or 0
        self._registered.add(keys.tenant)
        state.spirals.update(spirals)
        state.memory_count += count
        interval = self.gc_policy.trigger_interval
        tick = ticks - count  # the batch's stores are ticks - count + 1 .. ticks
        for pending, answer in answers:
            if answer.created:
                tick += 1
            due = answer.created and tick % interval == 0
            pending.finish(replace(answer, gc_due=True) if due else answer)

    # --- placement ------------------------------------------------------------------
    def _room_for(self, keys: TenantKeys, fence: Fence, state: _TenantState,
                  staged: _StagedStores, known: _Known, depth: Depth,
                  now: float) -> Spiral:
        """The spiral a new memory goes to. When the tenant is full, what is staged is
        committed first, then GC makes room (under the lock already held)."""
        limit = self.limits.max_memory_nodes
        if state.memory_count + len(staged.memories) >= limit:
            self._flush(keys, fence, state, staged)
            over = state.memory_count - limit + 1
            _, collected = self._collect_lowest(keys, state, fence, now, over=over, limit=over)
            known.records.update(dict.fromkeys(collected))
            if state.memory_count >= limit:
                raise CapacityExceeded(
                    f"tenant {keys.tenant!r} holds {state.memory_count} memories, the limit "
                    f"is {limit}, and none is collectable")
        spiral = placement.choose_spiral(keys.tenant, {**state.spirals, **staged.spirals},
                                         depth, self.limits.max_memory_spirals, now)
        if spiral is None:
            self._flush(keys, fence, state, staged)
            _, collected = self._collect_lowest(keys, state, fence, now, over=0, limit=32)
            known.records.update(dict.fromkeys(collected))
            spiral = placement.choose_spiral(keys.tenant, state.spirals, depth,
                                             self.limits.max_memory_spirals, now)
        if spiral is None:
            raise CapacityExceeded(
                f"all {self.limits.max_memory_spirals} spirals of tenant {keys.tenant!r} are "
                "full and GC found nothing collectable")
        return spiral

    # --- removal --------------------------------------------------------------------
    def _remove(self, keys: TenantKeys, state: _TenantState, fence: Fence,
                memories: Sequence[Memory], stale_entries: Sequence[str], *,
                final: bool, announce: bool = False) -> None:
        """Delete memories (and drop queue entries of already-missing ones) in one
        commit; the spirals free their slots. Each leaves a tombstone, so a store
        redelivered later cannot bring it back."""
        now = self._clock()
        expires = now + self.gc_policy.tombstone_ttl_s
        shrunk: dict[str, Spiral] = {}
        writes: list[Write] = [IndexRemove(keys.gc_queue, m) for m in stale_entries]
        for memory in memories:
            writes += [Delete(keys.memory(memory.id)), Delete(keys.sigil(memory.sigil)),
                       Increment(keys.spiral_count(memory.spiral_id), -1),
                       IndexRemove(keys.gc_queue, memory.id),
                       Put(keys.tombstone(memory.id), expires),
                       IndexPut(keys.tombstone_queue, memory.id, expires)]
            if announce:
                writes.append(events.event(events.COLLECTED,
                                           {"id": memory.id, "tenant": keys.tenant}))
            spiral = shrunk.get(memory.spiral_id) or state.spirals.get(memory.spiral_id)
            if spiral is not None:
                shrunk[spiral.id] = spiral.without_node(
                    memory.position.index, memory.depth, now, self.limits.spiral_turns)
        if memories:
            writes.append(Increment(keys.memory_count, -len(memories)))
        writes += [Put(keys.spiral(s.id), s.to_json()) for s in shrunk.values()]
        self._commit(keys.tenant, fence, writes, final=final)
        state.spirals.update(shrunk)
        state.memory_count -= len(memories)

    def _collect_lowest(self, keys: TenantKeys, state: _TenantState, fence: Fence,
                        now: float, *, over: int, limit: int,
                        final: bool = False) -> tuple[int, list[str]]:
        """Collect up to `limit` eligible memories from the head of the GC queue.

        Returns how many queue entries were eligible (stale ones included) and the ids
        of the memories collected.
        """
        chosen = gc.select(self.storage.index_range(keys.gc_queue, limit), now, over)
        if not chosen:
            return 0, []
        records = self.storage.get_many([keys.memory(m) for m in chosen])
        memories = [Memory.from_json(r) for r in records if r is not None]
        stale = [m for m, r in zip(chosen, records, strict=True) if r is None]
        self._remove(keys, state, fence, memories, stale, final=final)
        return len(chosen), [m.id for m in memories]

    def _gc_tenant(self, tenant: str, deadline: float, report: GcReport) -> bool:
        """GC one tenant in short locked batches; False when the budget ran out.

        Each batch is sized from the cost per memory measured so far to take a third of
        the time left, and a batch that would not finish in time is not started.
        """
        keys = TenantKeys(tenant)
        batch, per_item, first = GC_FIRST_BATCH, 0.0, True
        while True:
            started = time.perf_counter()
            if started + per_item * batch > deadline:
                return False
            try:
                with self.coordinator.critical(tenant, timeout_s=deadline - started,
                                               snapshot=self._snapshot(tenant)) as fence:
                    state = self._state(tenant, fence)
                    over = state.memory_count - self.limits.max_memory_nodes
                    if first:
                        self._purge_tombstones(keys, fence)
                        first = False
                    chosen, collected = self._collect_lowest(
                        keys, state, fence, self._clock(), over=over, limit=batch,
                        final=True)
                    report.collected_ids += collected
            except LockTimeout:
                return False
            if chosen < batch:
                return True
            now = time.perf_counter()
            per_item = max(per_item, (now - started) / batch)
            batch = max(1, min(GC_MAX_BATCH, int((deadline - now) / 3 / per_item)))

    def _purge_tombstones(self, keys: TenantKeys, fence: Fence) -> None:
        """Forget tombstones whose time is up (no redelivery can come that late)."""
        now = self._clock()
        expired = [m for m, expiry in self.storage.index_range(keys.tombstone_queue,
                                                                GC_MAX_BATCH) if expiry <= now]
        if expired:
            self._commit(keys.tenant, fence,
                         [w for m in expired for w in (Delete(keys.tombstone(m)),
                                                       IndexRemove(keys.tombstone_queue, m))])
