"""SpiralMemory: store, retrieve, collect, gc, rebuild_stats and stats.

The engine is pure Python over two seams: `Storage` (where records live) and
`Coordinator` (what serializes a tenant's critical sections and commits their
writes). It imports neither Celery nor any client library, so the same engine runs
in a test, a CLI or a worker.

This class is a facade: it validates arguments, then each operation enters the
tenant's section (`section.py`) and runs its module: `store.py`, `collect.py`,
`gc/run.py`, `rebuild.py`. Every operation decides from the tenant's state (cached in
this process while current) and commits its writes as atomic batches.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from spiral_tasks import ids, rebuild, records, validation
from spiral_tasks.audit.chain import Signer
from spiral_tasks.audit.journal import Journal
from spiral_tasks.cache import TenantCache
from spiral_tasks.collect import collect
from spiral_tasks.combining import Combiner, Pending
from spiral_tasks.config import AuditSettings, GcPolicy, Limits, OldSecret
from spiral_tasks.context import Context
from spiral_tasks.coordination.base import Coordinator, Fence, NotOptimistic, Refused
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.gc import GcReport, retain_until
from spiral_tasks.gc import run as gc_run
from spiral_tasks.gc.budget import Closings
from spiral_tasks.gc.slices import short_slices
from spiral_tasks.gc.tombstones import PurgeTimes
from spiral_tasks.keys import TENANTS_PREFIX, TenantKeys, tenant_keys
from spiral_tasks.model import Memory
from spiral_tasks.observe import NO_OBSERVER, Observer
from spiral_tasks.rebuild import RebuildReport
from spiral_tasks.results import StoreResult, TenantStats
from spiral_tasks.section import Sections, StateUse
from spiral_tasks.security import capability, resign
from spiral_tasks.security.keyring import DEFAULT_REFRESH_S, key_source
from spiral_tasks.storage.base import IndexPut, Put, Storage
from spiral_tasks.store import StoreBatch, StorePending, StoreRequest, expected

#: At most this many concurrent stores into one tenant are combined in one batch: the
#: bound that keeps the tail of a crowd of callers fair (`combining`).
STORE_BATCH = 16


def _weakly(engine: SpiralMemory) -> Callable[[str, list[StorePending]], None]:
    """An engine's `serve` for its own combiner, holding the engine weakly. Held as a
    bound method, it made a cycle (engine, combiner, method, engine): a dropped engine,
    with its storage and everything it held (a memory backend's every record), was
    freed only by Python's next full collection, and that one ran inside whatever
    allocated then: a GC run of the next engine paid 11-17 ms for it (`gc_pause`,
    memory backend at 5 ms, a collection of the previous round's engine). A plain
    reference to the engine, not a `WeakMethod`: calling that is a Python call more per
    store."""
    ref = weakref.ref(engine)

    def call(tenant: str, batch: list[StorePending]) -> None:
        held = ref()
        if held is None:  # only the engine's own stores reach its combiner
            raise RuntimeError("the engine of this combiner is gone")
        held._store_batch(tenant, batch)
    return call


class SpiralMemory:
    def __init__(
        self,
        storage: Storage,
        coordinator: Coordinator,
        limits: Limits | None = None,
        gc_policy: GcPolicy | None = None,
        *,
        sigil_secret: str | None = None,
        old_sigil_secrets: Sequence[OldSecret] = (),
        sigil_refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = ids.new_id,
        observer: Observer = NO_OBSERVER,
        audit: AuditSettings | None = None,
    ) -> None:
        self.storage = storage
        self.coordinator = coordinator
        self.observer = observer
        audit = audit or AuditSettings()
        journal = Journal(Signer.load(storage, audit.key), audit.retention_s, clock) \
            if audit.enabled else None
        self.sections = Sections(storage, coordinator, TenantCache(), observer, journal)
        self.context = Context(limits=limits or Limits(), gc=gc_policy or GcPolicy(),
                               sigils=key_source(storage, sigil_secret, old_sigil_secrets,
                                                 sigil_refresh_s),
                               clock=clock,
                               new_id=new_id)
        #: Concurrent stores into one tenant, combined (see `combining`).
        self.store_combiner: Combiner[StoreRequest, StoreResult] = Combiner(
            _weakly(self), STORE_BATCH)
        #: What the closing steps of this engine's GC runs cost: each run keeps back
        #: that much of its budget for its own (see `gc.budget.Closings`).
        self.gc_closings = Closings()
        #: When this engine's GC runs last saw each tenant's next tombstone due: they
        #: look for expired ones only from then on (see `gc.tombstones`).
        self.gc_purges = PurgeTimes()

    @property
    def limits(self) -> Limits:
        return self.context.limits

    def store(self, content: str, type: str = "general", depth: str = "shallow",
              associations: Iterable[str] | None = None, tenant: str = "default",
              memory_id: str | None = None) -> StoreResult:
        """Store a memory; with `memory_id` given, storing it again changes nothing, and
        neither does storing an id collected within the tombstone TTL.

        Concurrent stores into one tenant are combined: the caller holding the lock
        commits every queued store in one batch (see `combining`).
        Raises `InvalidArgument` (nothing written), `CapacityExceeded` (the tenant is
        full and nothing is collectable), `LockTimeout`, `LockLost` (retry).
        """
        request = StoreRequest.validated(content, type, depth, associations, tenant,
                                               memory_id)
        # The default observer hears nothing: nothing to time (`type` is an argument here).
        if self.observer.__class__ is Observer:
            return self.store_combiner.run(request.tenant, request)
        # `_timed` spelled out: a generator per store is a cost every store pays.
        started, ok = time.perf_counter(), False
        try:
            result = self.store_combiner.run(request.tenant, request)
            ok = True
            return result
        finally:
            self.observer.operation("store", request.tenant,
                                    time.perf_counter() - started, ok)

    def retrieve(self, memory_id: str, tenant: str = "default") -> Memory | None:
        """The memory (None if there is none), with its access time, count and strength
        updated in storage. Raises `InvalidArgument`, `LockTimeout`, `LockLost`,
        `CorruptRecord` (its record is corrupt: nothing written)."""
        tenant = validation.name("tenant", tenant)
        memory_id = validation.memory_id("memory_id", memory_id)
        with self._timed("retrieve", tenant), self.sections.enter(
                tenant, read=[TenantKeys(tenant).memory(memory_id)],
                state=StateUse.PRESERVE) as section:
            key = section.keys.memory(memory_id)
            data = section.get(key)
            if data is None:
                section.commit(final=True)
                return None
            memory = records.memory(key, data).accessed(self.context.clock())
            section.stage(Put(section.keys.memory(memory_id), memory.to_json()))
            if not memory.depth.protected:
                section.stage(IndexPut(section.keys.gc_queue, memory_id,
                                       retain_until(memory, self.context.gc.retention_s)))
            section.commit(final=True)
        return memory

    def retrieve_by_sigil(self, sigil: str, tenant: str = "default") -> Memory | None:
        """The memory `sigil` opens in `tenant`, or None: for a forged, truncated,
        mangled or other tenant's sigil, a collected memory's, or one under a key no
        longer accepted, alike and after the same work (see `security.capability`).
        Changes nothing. Raises `InvalidArgument` only for a tenant that is not a name
        or a sigil that is not a string (what the caller sent, not what it holds)."""
        tenant = validation.name("tenant", tenant)
        if not isinstance(sigil, str):
            raise InvalidArgument("sigil", f"must be a string, got {type(sigil).__name__}")
        with self._timed("retrieve_by_sigil", tenant):
            return capability.retrieve_by_sigil(self.storage, self.context.sigils.current(),
                                                tenant, sigil, self.context.clock())

    def resign_sigils(self, tenant: str | None = None, *,
                      on_tenant: Callable[[str], None] | None = None) -> resign.ResignReport:
        """Give every memory not signed under the signing key a sigil that is (its old
        sigil keeps working while its key is accepted), tenant by tenant under each
        tenant's lock. Raises `InvalidArgument`, `LockTimeout`, `LockLost`."""
        tenants = self.tenants() if tenant is None else [validation.name("tenant", tenant)]
        return resign.resign(self.context, self.sections, tenants, on_tenant=on_tenant)

    def collect(self, memory_id: str, tenant: str = "default") -> bool:
        """Delete a memory, leaving its tombstone; False when there was none.
        Raises `InvalidArgument`, `LockTimeout`, `LockLost`, `CorruptRecord` (its record
        is corrupt, so which spiral and slot it holds is unknown: nothing written)."""
        tenant = validation.name("tenant", tenant)
        memory_id = validation.memory_id("memory_id", memory_id)
        with self._timed("collect", tenant), self.sections.enter(
                tenant, read=[TenantKeys(tenant).memory(memory_id)],
                state=StateUse.LOAD) as section:
            return collect(self.context, section, memory_id)

    def gc(self, time_budget_ms: float | None = None, tenant: str | None = None) -> GcReport:
        """Collect eligible memories, least valuable first, within the time budget
        (default: the configured one); every tenant when `tenant` is None, fairly
        across runs. A run whose lock expires mid-way (a stall) ends there, reporting
        what it collected. Raises `InvalidArgument`."""
        budget_ms = (self.context.gc.time_budget_ms if time_budget_ms is None
                     else validation.time_budget_ms(time_budget_ms))
        tenants = [validation.name("tenant", tenant)] if tenant is not None else None
        with short_slices(self.context.gc.switch_interval_ms / 1000):
            report = gc_run.run(self.context, self.sections,
                                self.tenants() if tenants is None else tenants, budget_ms,
                                resume=tenants is None, closings=self.gc_closings,
                                purges=self.gc_purges)
        self.observer.gc_ran(report)
        return report

    def rebuild_stats(self, tenant: str | None = None, *, dry_run: bool = False,
                      on_tenant: Callable[[str], None] | None = None,
                      audit_as: str = "rebuild") -> RebuildReport:
        """Recompute every spiral and counter from the node records in storage, and
        write what differs (`dry_run`: only report it; observers hear of a rebuild
        that wrote, not of a look). `on_tenant` hears of each tenant done; `audit_as`
        names the operation in the audit log. Corrupt records are moved to the tenant's
        quarantine (`report.quarantined`); a tenant most of whose records do not decode
        is left alone (`report.refused`).
        Raises `InvalidArgument`, `LockTimeout`, `LockLost`."""
        tenants = self.tenants() if tenant is None else [validation.name("tenant", tenant)]
        report = rebuild.rebuild(self.context, self.sections, tenants, dry_run=dry_run,
                                 on_tenant=on_tenant, audit_as=audit_as)
        if not dry_run:
            self.observer.rebuilt(report)
        return report

    def stats(self, tenant: str = "default") -> TenantStats:
        """The tenant's total, its spirals and its node records, read under its lock.
        Raises `InvalidArgument`, `LockTimeout`, `CorruptRecord` (a spiral record or
        the total is corrupt: `spiral repair` quarantines it)."""
        tenant = validation.name("tenant", tenant)
        with self.sections.enter(tenant) as section:
            keys = section.keys
            spirals = sorted((records.spiral(k, v) for k, v in section.scan(keys.spirals)),
                             key=lambda s: s.created)
            total = section.get(keys.memory_count)
            nodes = section.count(keys.memories)
        stats = TenantStats(tenant, 0 if total is None
                            else records.counter(keys.memory_count, total), nodes,
                            tuple(spirals))
        self.observer.tenant_counts(tenant, stats.total_memories, len(stats.spirals))
        self.observer.invariant(tenant, stats.consistent)
        return stats

    def tenants(self) -> list[str]:
        """Every tenant that was ever stored into. Read without a lock: markers are
        only ever added, idempotently, so there is no section to protect."""
        return sorted(k[len(TENANTS_PREFIX):] for k in self.storage.keys(TENANTS_PREFIX))

    def close(self) -> None:
        self.storage.close()

    @contextmanager
    def _timed(self, operation: str, tenant: str) -> Iterator[None]:
        started = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.observer.operation(operation, tenant, time.perf_counter() - started, ok)

    def _store_batch(self, tenant: str, batch: list[StorePending]) -> None:
        keys = tenant_keys(tenant)
        absent, present = expected(keys, batch)
        taken = None
        if self.sections.commits_optimistically:
            served, taken = self._store_optimistically(keys, batch, absent, present)
            if served:
                return
        # What the batch will ask about, read in the lock's own round trip (or in the
        # refusal's, when a refused optimistic commit took the lock).
        with self.sections.enter(tenant, read=absent + present, state=StateUse.LOAD,
                                 keys=keys, taken=taken) as section:
            StoreBatch(self.context, section).serve(batch)

    def _store_optimistically(
            self, keys: TenantKeys, batch: list[StorePending], absent: list[str],
            present: list[str],
    ) -> tuple[bool, AbstractContextManager[Fence] | None]:
        """Serve the batch in one round trip, without the lock, if this process's cache
        of the tenant is current and the batch's ids are new (`absent`) and its links
        exist (`present`). (False, lock) when it must take the lock instead: nothing
        written, nobody answered, and `lock` the one the refusal took (reading the
        batch's keys and the tenant's state), if it took it.

        The batch is served on stand-ins, answered only once its commit succeeded: a
        refused commit leaves every request to the locked way, which decides afresh."""
        tenant = keys.tenant
        cached = self.sections.cache.get(tenant)
        if (cached is not None and cached.memory_count + len(batch)
                > self.context.limits.max_memory_nodes):
            # It would have to make room, which takes a second commit: only the lock
            # allows that, so an attempt would be served in vain.
            self.sections.optimistic_ended(tenant, "needs room", contended=False)
            return False, None
        section = self.sections.optimistic(tenant, absent=absent, present=present,
                                           read=absent + present)
        if section is None:
            return False, None
        stand_ins: list[StorePending] = [Pending(p.payload) for p in batch]
        try:
            StoreBatch(self.context, section).serve(stand_ins)
        except Refused as refused:
            self.sections.optimistic_ended(tenant, f"refused:{refused.reason}")
            return False, refused.locked
        except NotOptimistic:
            self.sections.optimistic_ended(tenant, "needs the lock", contended=False)
            return False, None
        self.sections.optimistic_ended(tenant, "committed")
        for pending, stand_in in zip(batch, stand_ins, strict=True):
            pending.adopt(stand_in)
        return True, None
