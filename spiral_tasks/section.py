"""One tenant's critical section: its keys, fence and state, with reads and commits.

Every operation works inside a `Section`. It holds the tenant's lock (through its
fence), the tenant's spirals and total when the operation needs them, and the writes
staged but not yet committed. Reads see the section's own writes, staged or committed:
a store batch that evicts a memory to make room, then meets a resend of that memory's
id, finds its tombstone, not the record it read on entering. Without that, the batch
would create the memory a second time and count it twice.

The tenant's state (spirals, total) is a working copy: it changes as writes are
staged, and goes back into the process's cache only after a commit succeeded, with
the generation that commit made. A failed commit leaves the cache as it was.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from types import TracebackType
from typing import Any

import orjson

from spiral_tasks.audit import actor as audit_actor
from spiral_tasks.audit.actor import Actor
from spiral_tasks.audit.journal import Event, Journal
from spiral_tasks.cache import UNKNOWN, TenantCache, TenantState
from spiral_tasks.coordination.base import Coordinator, Fence, Snapshot
from spiral_tasks.errors import LockLost, LockTimeout
from spiral_tasks.keys import TenantKeys, tenant_marker
from spiral_tasks.model import Spiral
from spiral_tasks.observe import NO_OBSERVER, Observer
from spiral_tasks.storage.base import CheckedPut, Delete, Increment, Put, Storage, Unreadable, Write

#: A chunked commit commits when it holds this many writes or this many bytes of
#: values, so one Redis script stays small whatever the memories' sizes.
CHUNK_WRITES = 1000
CHUNK_BYTES = 8 * 1024 * 1024
#: How far each observation moves a tenant's odds of an optimistic commit (see
#: `Sections.optimistic_ended`): the weight of the newest in the running average.
ODDS_WEIGHT = 0.25
#: The odds to try at while this process's attempts mostly fail (`_prior` below
#: `ODDS_TO_TRY`): about six current caches in a row on the tenant.
ODDS_SURE = 0.95
#: The same for the odds of a tenant not seen yet, from every tenant's signs.
PRIOR_WEIGHT = 0.05
#: Optimistic commits are tried on a tenant while its odds are at least this. A commit
#: refused because the tenant moved costs the batch's serving once more (~ what a
#: success saves, one round trip); refused because it was locked, that and a round
#: trip: so an attempt pays only where it succeeds more often than not.
ODDS_TO_TRY = 0.75


class Assumed:
    """The value an optimistic section holds for a key it assumes present (a memory a
    store links to): existence is all it may be asked, and the commit checks it."""

    def __repr__(self) -> str:
        return "<assumed present>"


ASSUMED_PRESENT = Assumed()


class StateUse(enum.Enum):
    """What an operation does with the tenant's cached spirals and total."""

    #: Reads and changes them (store, collect, GC): load them on entering.
    LOAD = "load"
    #: Neither reads nor changes them (retrieve): a current cache stays current.
    PRESERVE = "preserve"
    #: May change them behind the cache's back (rebuild) or only reads storage
    #: (stats): the cache is left to go stale by generation.
    IGNORE = "ignore"


class Section:
    def __init__(self, keys: TenantKeys, fence: Fence, storage: Storage, cache: TenantCache,
                 state: TenantState | None, carried: TenantState | None,
                 observer: Observer = NO_OBSERVER, journal: Journal | None = None) -> None:
        self.keys = keys
        #: The tenant's name (asked several times by every store).
        self.tenant = keys.tenant
        self._journal = journal
        self._events: dict[tuple[str, Actor], list[str]] = {}
        self._observer = observer
        self.fence = fence
        self._storage = storage
        self._cache = cache
        self._state = state
        self._carried = carried
        self._known: dict[str, Any] = dict(fence.read)
        self._pending: list[Write] = []
        self._staged: dict[str, Any] = {}
        self._changed_spirals: dict[str, Spiral] = {}
        self._register = False

    @property
    def publishes(self) -> bool:
        """Whether events staged here reach anyone (`Storage.publishes`)."""
        return self._storage.publishes

    @property
    def state(self) -> TenantState:
        """The tenant's spirals and total, as the staged writes leave them."""
        if self._state is None:
            raise RuntimeError("this section was entered without the tenant's state")
        return self._state

    # --- reads ----------------------------------------------------------------------
    def get(self, key: str) -> Any:
        """The value at `key` as this section's writes leave it (None: none)."""
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        """Like `get`, for many keys; a value that does not decode raises
        `CorruptRecord` naming its key."""
        values = self.read_many(keys)
        for value in values:
            if isinstance(value, Unreadable):
                raise value.error()
        return values

    def read_many(self, keys: Sequence[str]) -> list[Any]:
        """Like `get_many`, but a value that does not decode comes back `Unreadable`:
        for a caller that can go on without it (GC passes a corrupt record by)."""
        missing = [k for k in keys if k not in self._staged and k not in self._known]
        if missing:
            self._known.update(zip(missing, self._storage.read_many(missing), strict=True))
        return [self._staged[k] if k in self._staged else self._known[k] for k in keys]

    def index_range(self, index: str, limit: int | None = None) -> list[tuple[str, float]]:
        """An ordered index as committed. Indexes are not tracked write by write, so
        commit first: reading one with writes pending is a bug."""
        self._require_committed("index_range")
        return self._storage.index_range(index, limit)

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """Every committed (key, value) under `prefix`, streamed; `CorruptRecord` at a
        value that does not decode."""
        self._require_committed("scan")
        return self._storage.scan(prefix)

    def read_scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """Like `scan`, with values that do not decode as `Unreadable` (the rebuild)."""
        self._require_committed("read_scan")
        return self._storage.read_scan(prefix)

    def read_batches(self, prefix: str,
                     rows: Callable[[list[str], list[bytes]], list[Any] | None] | None = None,
                     ) -> Iterator[list[tuple[str, Any]]]:
        """`read_scan`, a batch at a time (the rebuild's read of every node; `rows`: see
        `Storage.read_batches`)."""
        self._require_committed("read_batches")
        return self._storage.read_batches(prefix, rows)

    def scan_stored(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        """Every committed (key, bytes as stored) under `prefix`, unopened (the key
        rotation asks which key sealed each record)."""
        self._require_committed("scan_stored")
        return self._storage.scan_stored(prefix)

    def count(self, prefix: str) -> int:
        self._require_committed("count")
        return len(self._storage.keys(prefix))

    # --- writes ---------------------------------------------------------------------
    @property
    def has_pending(self) -> bool:
        return bool(self._pending or self._changed_spirals or self._register)

    def stage(self, *writes: Write) -> None:
        """Queue writes for the next commit; reads see them at once."""
        staged, known = self._staged, self._known
        for write in writes:
            if isinstance(write, Put):
                staged[write.key] = write.value
            elif isinstance(write, Delete):
                staged[write.key] = None
            elif isinstance(write, Increment):
                staged.pop(write.key, None)
                known.pop(write.key, None)  # read afresh after the commit
        self._pending.extend(writes)

    def put_spiral(self, spiral: Spiral) -> None:
        """A spiral's next state: in the working state now, written once per commit."""
        self.state.put(spiral)
        self._changed_spirals[spiral.id] = spiral

    def audit(self, op: str, ids: Sequence[str] = (), actor: Actor | None = None) -> None:
        """Record `op` on `ids` in the audit log, in the next commit (one entry per
        operation and actor in each commit). `actor`: who asked (default: the one
        acting in this thread)."""
        if self._journal is not None:
            key = (op, actor or audit_actor.current())
            self._events.setdefault(key, []).extend(ids)

    def ensure_registered(self) -> None:
        """Make sure the tenant's marker exists (written once per process)."""
        if not self._cache.registered(self.tenant):
            self._register = True

    def commit(self, final: bool = False) -> int | None:
        """Commit every staged write in one atomic batch; return the value the last
        increment left. `final`: no commit follows, so the lock may go with it."""
        writes: list[Write] = [Put(tenant_marker(self.tenant), 1)] if self._register else []
        writes += [CheckedPut(self.keys.spiral(s.id), s.to_json())
                   for s in self._changed_spirals.values()]
        writes += self._pending
        head = self._audit_writes(writes)
        last = self.fence.commit(writes, final=final)
        self._known.update(self._staged)
        if head is not None:
            self._known[self.keys.audit_head] = head
            self._events = {}
        if self._register:
            self._cache.mark_registered([self.tenant])
        self._pending, self._staged, self._changed_spirals = [], {}, {}
        self._register = False
        self._refresh_cache()
        return last

    def commit_in_chunks(self, writes: Iterable[Write], *, final: bool = False,
                         on_chunk: Callable[[int], None] | None = None) -> None:
        """Stage and commit `writes` in chunks (`CHUNK_WRITES` writes or `CHUNK_BYTES`
        of values), extending the lock before each, so a long job (a restore, a
        rebuild's corrections, a re-signing) keeps it; `on_chunk` hears how many
        writes each commit carried. The last chunk commits even when empty."""
        chunk: list[Write] = []
        size = 0
        for write in writes:
            chunk.append(write)
            size += len(orjson.dumps(write.value)) if isinstance(write, Put) else 64
            if len(chunk) >= CHUNK_WRITES or size >= CHUNK_BYTES:
                self._commit_chunk(chunk, on_chunk, final=False)
                chunk, size = [], 0
        self._commit_chunk(chunk, on_chunk, final=final)

    def _commit_chunk(self, chunk: list[Write], on_chunk: Callable[[int], None] | None,
                      final: bool) -> None:
        self.fence.extend()
        self.stage(*chunk)
        self.commit(final=final)
        if on_chunk is not None and chunk:
            on_chunk(len(chunk))

    def _audit_writes(self, writes: list[Write]) -> dict[str, Any] | None:
        """Append the entries of this commit's events to `writes`; the new head."""
        if self._journal is None or not self._events:
            return None
        events = [Event(op, tuple(ids), actor) for (op, actor), ids in self._events.items()]
        key = self.keys.audit_head  # read on entering: nearly always known
        head = self._staged[key] if key in self._staged else self._known[key] \
            if key in self._known else self.read_many([key])[0]
        if isinstance(head, Unreadable):
            raise head.error()
        added, head = self._journal.writes(self._storage, self.keys, head, events)
        writes += added
        return head

    def _refresh_cache(self) -> None:
        generation = self.fence.generation
        head = self._audit_head()
        if self._state is not None:
            self._state.generation = generation
            self._state.audit_head = head
            self._cache.put(self.tenant, self._state.copy())
            if type(self._observer) is not Observer:  # the default hears nothing
                self._observer.tenant_counts(self.tenant, self._state.memory_count,
                                             len(self._state.spirals))
        elif self._carried is not None:
            self._carried = replace(self._carried, generation=generation, audit_head=head)
            self._cache.put(self.tenant, self._carried)

    def _audit_head(self) -> Any:
        """The audit log's head as this section leaves it, if it knows it readable."""
        if self._journal is None:
            return UNKNOWN
        head = self._known.get(self.keys.audit_head, UNKNOWN)
        return UNKNOWN if isinstance(head, Unreadable) else head

    def _require_committed(self, what: str) -> None:
        if self.has_pending:
            raise RuntimeError(f"{what} with writes pending: commit them first")


def _state_request(keys: TenantKeys, cached: TenantState | None) -> Snapshot:
    """The tenant's state, read on taking its lock unless `cached` is current: its
    total, its marker and its spirals (those `cached` knows by name; the rest are
    found under the prefix)."""
    known = cached.spiral_keys(keys) if cached else ()
    # Positional (prefix, keys, unless_generation): asked on every locked entry.
    return Snapshot(keys.spirals, (keys.memory_count, tenant_marker(keys.tenant), *known),
                    cached.generation if cached else None)


class Sections:
    """Opens sections: the one way operations reach a tenant's data."""

    def __init__(self, storage: Storage, coordinator: Coordinator,
                 cache: TenantCache | None = None, observer: Observer = NO_OBSERVER,
                 journal: Journal | None = None) -> None:
        self.storage = storage
        self.coordinator = coordinator
        self.cache = cache or TenantCache()
        self.observer = observer
        #: The audit log's writer (None: audit off).
        self.journal = journal
        #: How optimistic sections ended ("committed", "refused:<why>", ...): counts for
        #: measuring the conflict rate.
        self.optimistic_outcomes: Counter[str] = Counter()
        #: Whether `optimistic` is worth asking (see `Coordinator.commits_optimistically`).
        self.commits_optimistically = coordinator.commits_optimistically
        self._outcomes_guard = threading.Lock()
        #: Per tenant: the odds that an optimistic commit would succeed now, a running
        #: average of what attempts and locked entries found.
        self._odds: dict[str, float] = {}
        #: The same over every tenant, more slowly: the odds of a tenant not seen yet
        #: (where this process shares most tenants, a new one is no different).
        self._prior = 1.0

    def optimistic(self, tenant: str, *, absent: Sequence[str], present: Sequence[str],
                   read: Sequence[str] = ()) -> Section | None:
        """A section over this process's cached state of `tenant`, without its lock,
        whose one commit is refused (`Refused`) unless the tenant is still at the
        cached generation, unlocked, each of `absent` absent and each of `present`
        present. Reads of those keys answer from the assumption; the audit log's head
        comes from the cache. None when the coordinator commits only under the lock or
        the cache cannot be trusted for it.

        A commit refused because the tenant moved may take the lock in the same step
        (`Refused.locked`), having read `read` and the tenant's state as `enter` with
        `StateUse.LOAD` would: pass it to `enter(taken=...)`."""
        cached = self._trusted(tenant)
        if cached is None or self._skip(tenant):
            return None
        keys = TenantKeys(tenant)
        known: dict[str, Any] = dict.fromkeys(absent)
        known.update(dict.fromkeys(present, ASSUMED_PRESENT))
        if self.journal is not None:
            if cached.audit_head is UNKNOWN:
                return None
            known[keys.audit_head] = cached.audit_head
        # The generation moved if the lock is taken on refusal: the snapshot is taken
        # whatever it names, so it names none (`enter` then loads it).
        snapshot = replace(_state_request(keys, cached), unless_generation=None)
        fence = self.coordinator.optimistic(tenant, cached.generation, absent, present,
                                            known, read=self._reads(keys, read),
                                            snapshot=snapshot)
        if fence is None:
            return None
        return Section(keys, fence, self.storage, self.cache, cached.copy(), None,
                       self.observer, self.journal)

    def optimistic_ended(self, tenant: str, outcome: str, *, contended: bool = True) -> None:
        """How an optimistic section ended ("committed", or why it was not): counted,
        and, when it tells whether other writers moved the tenant (`contended`), taken
        into the tenant's odds (`_observe`). A batch that needs the lock for its own
        reasons (making room in a full tenant) says nothing of other writers: counted
        against the odds, a tenant kept at its limit would hover near the threshold
        and waste an attempt every few stores."""
        with self._outcomes_guard:
            self.optimistic_outcomes[outcome] += 1
        if contended:
            self._observe(tenant, outcome == "committed")

    def reset_odds(self) -> None:
        """Forget what was seen of every tenant: the next store of each tries an
        optimistic commit again (tests that need one)."""
        with self._outcomes_guard:
            self._odds.clear()
            self._prior = 1.0

    def _observe(self, tenant: str, current: bool) -> None:
        """One sign of whether an optimistic commit on `tenant` would have succeeded:
        an attempt's outcome, or a locked entry that found this process's cache
        current and the lock free (or not).

        A refused attempt costs what a success saves, or more (`ODDS_TO_TRY`); where
        other processes write the same tenant as often as this one, most would be
        refused. So attempts are made only while the running average of these signs
        says they mostly succeed. Locked entries keep it up to date without attempts:
        a tenant this process comes to write alone is tried again after a few stores,
        and one it shares is rarely tried (a run of current caches, as one process
        sharing a tenant with another finds one time in two, moves it only slowly)."""
        with self._outcomes_guard:
            odds = self._odds.get(tenant, self._prior)
            self._odds[tenant] = odds + ODDS_WEIGHT * (float(current) - odds)
            self._prior += PRIOR_WEIGHT * (float(current) - self._prior)

    def _skip(self, tenant: str) -> bool:
        with self._outcomes_guard:
            odds = self._odds.get(tenant, self._prior)
            # Where most of this process's attempts fail (it shares its tenants), a
            # tenant's run of current caches is mostly chance: it must be longer.
            if odds >= (ODDS_TO_TRY if self._prior >= ODDS_TO_TRY else ODDS_SURE):
                return False
            self.optimistic_outcomes["skipped"] += 1
            return True

    def enter(self, tenant: str, *, read: Sequence[str] = (),
              state: StateUse = StateUse.IGNORE, timeout_s: float | None = None,
              keys: TenantKeys | None = None,
              taken: AbstractContextManager[Fence] | None = None,
              ) -> AbstractContextManager[Section]:
        """Take the tenant's lock (waiting at most `timeout_s`), reading `read` and,
        for `StateUse.LOAD`, the tenant's state unless this process's cache of it is
        current, in the same step. `keys`: the tenant's, if the caller made them.
        `taken`: a lock a refused optimistic commit took (`Refused.locked`), which
        already read what this section needs (the same `read` and, taken since the
        tenant moved, its state): entered instead.

        The coordinator's wait and the section's losses are observed here."""
        return _Entering(self, tenant, keys or TenantKeys(tenant), read, state, timeout_s,
                         taken)

    def _section(self, keys: TenantKeys, fence: Fence, state: StateUse,
                 asked: TenantState | None) -> Section:
        """The section over `fence`, with the state `state` says (`asked`: the cache
        entry the snapshot request was made by)."""
        cached = None
        if state is StateUse.LOAD:
            cached = asked
        elif state is StateUse.PRESERVE:
            # It asked nothing: any entry at the generation the lock found will do.
            cached = self._trusted(keys.tenant)
        current = cached if cached and cached.generation == fence.generation else None
        working = None
        if state is StateUse.LOAD:
            working = current.copy() if current else self._load(keys, fence)
        carried = current if state is StateUse.PRESERVE else None
        return Section(keys, fence, self.storage, self.cache, working, carried,
                       self.observer, self.journal)

    def _reads(self, keys: TenantKeys, read: Sequence[str]) -> list[str]:
        """The keys a section reads on entering: `read`, and the audit chain's end."""
        return [*read, keys.audit_head] if self.journal is not None else list(read)

    def _trusted(self, tenant: str) -> TenantState | None:
        """The cached state, unless it has no generation: a tenant never committed to
        has none to tell its states apart (a Redis wiped since the state was cached is
        at "" too), so such a state is never trusted."""
        cached = self.cache.get(tenant)
        return cached if cached is not None and cached.generation else None

    def _load(self, keys: TenantKeys, fence: Fence) -> TenantState:
        # A snapshot was asked for unless the tenant was at the cached generation,
        # and it is not: so the fence took one.
        assert fence.snapshot is not None
        loaded = TenantState.from_snapshot(keys, fence.snapshot, fence.generation,
                                           fence.snapshot_raw, self.cache.get(keys.tenant))
        if fence.snapshot.get(tenant_marker(keys.tenant)) is None:
            # This process may have written the marker before storage lost it (a Redis
            # restarted empty or from an older snapshot): write it again, or GC and
            # rebuild over every tenant would pass this one by.
            self.cache.forget_registered(keys.tenant)
        self.cache.put(keys.tenant, loaded.copy())
        return loaded


class _Entering(AbstractContextManager[Section]):
    """`Sections.enter`'s section: a class, not a generator context manager (every
    operation enters one; the generator's frames and `contextlib`'s wrapper were four
    Python calls more per store)."""

    __slots__ = (
        "_asked",
        "_held",
        "_keys",
        "_read",
        "_sections",
        "_state",
        "_tenant",
        "_timeout_s",
    )

    def __init__(self, sections: Sections, tenant: str, keys: TenantKeys,
                 read: Sequence[str], state: StateUse, timeout_s: float | None,
                 taken: AbstractContextManager[Fence] | None) -> None:
        self._sections = sections
        self._tenant = tenant
        self._keys = keys
        self._read = read
        self._state = state
        self._timeout_s = timeout_s
        self._held = taken
        #: The cache entry the lock's last try asked about: read when the lock is about
        #: to be taken, so a section that waited for another (a commit of this process
        #: meanwhile) asks by the state that commit left, not the one it found first.
        self._asked: TenantState | None = None

    def _wanted(self, generation: str | None) -> Snapshot | None:
        cached = self._asked = self._sections._trusted(self._tenant)
        if cached is not None and cached.generation == generation:
            return None  # the coordinator found the tenant where the cache is
        return _state_request(self._keys, cached)

    def __enter__(self) -> Section:
        sections, tenant, state = self._sections, self._tenant, self._state
        started = time.perf_counter()
        held = self._held
        if held is None:
            held = self._held = sections.coordinator.critical(
                tenant, self._timeout_s, sections._reads(self._keys, self._read),
                self._wanted if state is StateUse.LOAD else None)
        try:
            fence = held.__enter__()
        except LockTimeout:
            self._held = None  # see `__exit__`
            sections.observer.lock_timed_out(tenant, time.perf_counter() - started)
            raise
        try:
            observer = sections.observer
            if type(observer) is not Observer:  # the default hears nothing
                observer.lock_acquired(tenant, time.perf_counter() - started)
            asked = self._asked
            if asked is not None and sections.commits_optimistically:
                # Would an optimistic commit have done? Not if the tenant moved past
                # the cache, nor if the lock was held when first asked.
                sections._observe(tenant, asked.generation == fence.generation
                                  and not fence.waited)
            return sections._section(self._keys, fence, state, asked)
        except BaseException as exc:  # as a `with` body would: the lock is left
            self._held = None  # see `__exit__`
            if not held.__exit__(type(exc), exc, exc.__traceback__):
                raise
            raise RuntimeError("a lock's exit swallowed an error entering it") from exc

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> bool | None:
        if kind is not None and issubclass(kind, LockLost):
            self._sections.observer.lock_lost(self._tenant)
        held, self._held = self._held, None
        assert held is not None, "left without being entered"
        # Let go of the lock's context: it holds this entry's `_wanted`, a cycle that
        # would keep the engine's storage alive until a full collection.
        return held.__exit__(kind, exc, traceback)
