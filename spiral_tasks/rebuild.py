"""Rebuilding a tenant's statistics from what storage actually holds.

The original rebuilt from in-process maps, so it could not repair what a crash or
another process left behind, and it never looked at the INCRBY counters. Here the
ground truth is the node records in storage. From them the rebuild recomputes every
spiral (count, depth sum, free slots, radius, turns), the per-spiral and tenant
counters, the sigil index entries and the GC queue, and returns the writes that make
storage agree, with a report of every difference.

Orphans: a node whose spiral record is missing gets its spiral back (its type is the
one whose radius formula reproduces the nodes' stored radii); counters of spirals that
do not exist, sigil entries of missing memories and queue entries of missing memories
are removed. Two nodes claiming one slot: the later is moved to a free slot.

Corrupt records (bytes that do not decode, values of the wrong shape; see `records`)
are moved to the tenant's quarantine and reported (`quarantine`); the statistics are
rebuilt from the records left, so a quarantined node no longer counts.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from spiral_tasks import events, gc, geometry, records
from spiral_tasks.context import Context
from spiral_tasks.errors import CorruptRecord, QuarantineRefused
from spiral_tasks.model import Depth, Spiral, SpiralStats, SpiralType
from spiral_tasks.quarantine import Quarantine, Quarantined
from spiral_tasks.section import Section, Sections
from spiral_tasks.security.sigils import Keyring, index_name, index_names
from spiral_tasks.storage.base import (
    Delete,
    IndexPut,
    IndexRemove,
    Put,
    Unreadable,
    Write,
)


@dataclass(frozen=True)
class SpiralCorrection:
    spiral_id: str
    tenant: str
    type: str
    before: SpiralStats
    after: SpiralStats

    def to_json(self) -> dict[str, Any]:
        return {
            "spiral_id": self.spiral_id,
            "tenant": self.tenant,
            "type": self.type,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "deltas": self.before.deltas(self.after),
        }


@dataclass(frozen=True)
class CounterCorrection:
    key: str
    before: int | None
    after: int | None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "before": self.before, "after": self.after}


@dataclass
class Orphans:
    nodes: list[str] = field(default_factory=list)
    reslotted_nodes: list[str] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)
    sigils: list[str] = field(default_factory=list)
    queue_entries: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return (len(self.nodes) + len(self.reslotted_nodes) + len(self.counters)
                + len(self.sigils) + len(self.queue_entries))

    def extend(self, other: Orphans) -> None:
        self.nodes += other.nodes
        self.reslotted_nodes += other.reslotted_nodes
        self.counters += other.counters
        self.sigils += other.sigils
        self.queue_entries += other.queue_entries

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": list(self.nodes),
            "reslotted_nodes": list(self.reslotted_nodes),
            "counters": list(self.counters),
            "sigils": list(self.sigils),
            "queue_entries": list(self.queue_entries),
        }


@dataclass(frozen=True)
class Refusal:
    tenant: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"tenant": self.tenant, "reason": self.reason}


@dataclass
class RebuildReport:
    corrected_spirals: list[SpiralCorrection] = field(default_factory=list)
    unchanged_spirals: list[str] = field(default_factory=list)
    corrected_counters: list[CounterCorrection] = field(default_factory=list)
    orphans: Orphans = field(default_factory=Orphans)
    queue_fixes: int = 0
    sigil_fixes: int = 0
    quarantined: list[Quarantined] = field(default_factory=list)
    #: Tenants left as they were: most of their records do not decode (a wrong key or
    #: codec, not corruption), so nothing of theirs was quarantined or corrected.
    refused: list[Refusal] = field(default_factory=list)
    total_nodes: int = 0
    duration_ms: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.corrected_spirals or self.corrected_counters or self.orphans
                    or self.queue_fixes or self.sigil_fixes or self.quarantined
                    or self.refused)

    def extend(self, other: RebuildReport) -> None:
        self.corrected_spirals += other.corrected_spirals
        self.unchanged_spirals += other.unchanged_spirals
        self.corrected_counters += other.corrected_counters
        self.orphans.extend(other.orphans)
        self.queue_fixes += other.queue_fixes
        self.sigil_fixes += other.sigil_fixes
        self.quarantined += other.quarantined
        self.refused += other.refused
        self.total_nodes += other.total_nodes

    def to_json(self) -> dict[str, Any]:
        return {
            "corrected_spirals": [c.to_json() for c in self.corrected_spirals],
            "unchanged_spirals": list(self.unchanged_spirals),
            "corrected_counters": [c.to_json() for c in self.corrected_counters],
            "orphans": self.orphans.to_json(),
            "queue_fixes": self.queue_fixes,
            "sigil_fixes": self.sigil_fixes,
            "quarantined": [q.to_json() for q in self.quarantined],
            "refused": [r.to_json() for r in self.refused],
            "total_nodes": self.total_nodes,
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclass
class _Slots:
    """What the nodes of one spiral say about it."""

    used: set[int] = field(default_factory=set)
    depth_tenths: int = 0
    duplicates: list[str] = field(default_factory=list)
    radii: list[tuple[int, float]] = field(default_factory=list)
    first_depth: Depth | None = None


def infer_type(radii: Iterable[tuple[int, float]], fallback: SpiralType) -> SpiralType:
    """The spiral type whose radius formula reproduces every (slot, radius) seen."""
    points = list(radii)
    for kind in SpiralType:
        if all(math.isclose(geometry.radius(kind, i), r, rel_tol=1e-9, abs_tol=1e-9)
               for i, r in points):
            return kind
    return fallback


#: Nodes scanned (or entries compared, corrections made) between two calls of the
#: rebuild's heartbeat (`Paced`: it extends the lock only when a share of its
#: lifetime has passed). Every step over every node beats: the queue's and the
#: sigils' corrections for 60,000 nodes once ran without a beat, 0.6 s under load 9
#: (each correction a new object, and the collector's full passes among them), and
#: a retried rebuild lost its 2 s lock there on a busier machine.
HEARTBEAT_EVERY = 2_000
#: The share of the lock's lifetime after which a heartbeat extends it: a scan may
#: run this many times slower than usual (a busy machine) and keep its lock.
HEARTBEAT_SHARE = 0.125
#: By a record's depth (its JSON value): its weight, and whether GC may take it.
_DEPTH_TENTHS = {depth.value: depth.tenths for depth in Depth}
_COLLECTABLE = frozenset(depth.value for depth in Depth if not depth.protected)


class Paced:
    """`extend`, called at most once every `interval_s`: the scan calls it every few
    thousand nodes, and a count of nodes is no clock. 20,000 nodes between extensions
    took well under the 2 s lifetime on a quiet machine and over it on a busy one,
    which lost the lock, and the retry on the same machine lost it again."""

    def __init__(self, extend: Callable[[], None], interval_s: float) -> None:
        self._extend = extend
        self._interval_s = interval_s
        self._last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval_s:
            self._extend()
            self._last = now


def rebuild(ctx: Context, sections: Sections, tenants: list[str], *, dry_run: bool = False,
            on_tenant: Callable[[str], None] | None = None,
            audit_as: str = "rebuild") -> RebuildReport:
    """Rebuild each tenant under its lock, kept alive while the scan runs; a lock lost
    meanwhile raises `LockLost` (nothing of that tenant's corrections was written
    after the loss) and the caller retries.

    `dry_run` computes the same report under the same locks and writes nothing (no
    correction, no event): what `spiral repair --dry-run` shows. `on_tenant` is called
    after each tenant, so a caller can show progress over many. A tenant that refuses
    quarantine (`QuarantineRefused`) is left as it was and reported in `refused`; the
    others are rebuilt. Each tenant rebuilt (not looked at) gets an audit entry named
    `audit_as` ("repair" from the CLI).
    """
    started = time.perf_counter()
    report = RebuildReport()
    for tenant in tenants:
        try:
            with sections.enter(tenant) as section:
                lifetime = sections.coordinator.lock_lifetime_s  # None: never expires
                heartbeat = Paced(section.fence.extend,
                                  math.inf if lifetime is None else lifetime * HEARTBEAT_SHARE)
                part, writes = rebuild_tenant(ctx, section, heartbeat=heartbeat)
                if not dry_run and (writes or part.total_nodes):
                    section.audit(audit_as)  # a tenant with nothing in it: nothing to record
                    section.commit_in_chunks(writes, final=True)  # the last, even empty
        except QuarantineRefused as exc:
            part = RebuildReport(refused=[Refusal(tenant, str(exc))])
        report.extend(part)
        if on_tenant is not None:
            on_tenant(tenant)
    report.duration_ms = (time.perf_counter() - started) * 1000
    if not dry_run:
        sections.storage.apply([events.event(events.REBUILD_STATS, report.to_json())])
    return report


def rebuild_tenant(ctx: Context, section: Section,
                   heartbeat: Callable[[], None] = lambda: None,
                   ) -> tuple[RebuildReport, list[Write]]:
    """The report and the writes that make the tenant's records agree with its nodes.

    Every record is read through `records` (tolerantly: `read_scan`); a corrupt one is
    moved to the tenant's quarantine (`quarantine`) and the rest is rebuilt without
    it. The moves come first in the writes, so a record rewritten at the same key (a
    counter, a sigil entry, a tombstone) is written after its corrupt copy left.
    `heartbeat` is called every few thousand nodes, so a caller can keep its lock.
    """
    keys = section.keys
    now = ctx.clock()
    report = RebuildReport()
    writes: list[Write] = []
    moves = Quarantine(keys, now)
    spirals: dict[str, Spiral] = {}
    for key, value in section.read_scan(keys.spirals):
        spiral = moves.read(records.spiral, key, value)
        if spiral is not None:
            spirals[spiral.id] = spiral
    slots, sigil_of, deadlines = _read_nodes(ctx, section, moves, spirals, report, heartbeat)
    moves.check()

    # Each step below reads or compares as many entries as there are nodes (a large
    # tenant's sigil index alone can take seconds on a busy machine): the lock gets
    # a full lifetime again before each, not only while the nodes are read.
    heartbeat()
    truths = _true_spirals(section, spirals, slots, ctx.limits.spiral_turns, now, report,
                           writes)
    _reconcile_counters(section, moves, truths, report, writes)
    heartbeat()
    _reconcile_sigils(ctx, section, moves, sigil_of, report, writes, heartbeat)
    heartbeat()
    _reconcile_queue(section, deadlines, report, writes, heartbeat)
    heartbeat()
    restored = _restore_tombstones(ctx, section, moves)
    report.quarantined = moves.moved
    return report, moves.writes + restored + writes


def _read_nodes(ctx: Context, section: Section, moves: Quarantine, spirals: dict[str, Spiral],
                report: RebuildReport, heartbeat: Callable[[], None],
                ) -> tuple[dict[str, _Slots], dict[str, tuple[str, float]], dict[str, float]]:
    """What the tenant's nodes say: each spiral's slots (`_Slots`), each memory's sigil
    and creation time, each collectable memory's GC deadline. A corrupt record is
    moved to the quarantine (`moves`) and not counted."""
    slots: dict[str, _Slots] = {}
    sigil_of: dict[str, tuple[str, float]] = {}
    deadlines: dict[str, float] = {}
    retention = ctx.gc.retention_s
    # What a node's depth, strength and access count add to its last access: the
    # float `gc.retention_deadline` computes (its `last_accessed + retention_s * w`,
    # with last_accessed 0.0, is exactly `retention_s * w`), once per combination
    # rather than per node: most nodes share theirs.
    offsets: dict[tuple[str, float, int], float] = {}
    prefix, tenant = section.keys.memories, section.keys.tenant
    fast, read_node, row_of = records.memory_row, records.memory_record, records.row_of
    # Most batches come as rows already, decoded and checked in C (`memory_rows`); a
    # batch that is not plainly memory records comes decoded, each through `fast`.
    rows_of = functools.partial(records.memory_rows, prefix=prefix, tenant=tenant,
                                spiral_ids=slots.keys())

    # Every node passes here: only dict, set and tuple steps, no object of our own per
    # node, and no call but the record's check (a rebuild should cost little more
    # than reading and decoding the records).
    scanned, beat = 0, HEARTBEAT_EVERY
    for batch in section.read_batches(prefix, rows_of):
        scanned += len(batch)
        if scanned >= beat:
            heartbeat()
            beat += HEARTBEAT_EVERY
        for key, value in batch:
            # `memory_record`'s checks, without a Python step per field; a spiral id
            # in `slots` was found an id already.
            row = value if type(value) is tuple else fast(key, value, prefix, tenant, slots)
            if row is None:
                try:
                    row = row_of(read_node(key, value))
                except CorruptRecord as exc:  # `moves.read_memory`, inline
                    moves.memories_unreadable += isinstance(value, Unreadable)
                    moves.move(key, value, exc.reason)
                    continue
            (memory_id, spiral_id, depth, sigil, created, last_accessed, strength,
             access_count, index, radius) = row
            group = slots.get(spiral_id)
            if group is None:
                group = slots[spiral_id] = _Slots(first_depth=Depth(depth))
            used = group.used
            if index in used:
                group.duplicates.append(memory_id)
            else:
                used.add(index)
            group.depth_tenths += _DEPTH_TENTHS[depth]
            if spiral_id not in spirals:
                group.radii.append((index, radius))
            sigil_of[memory_id] = (sigil, created)  # an int or a float
            if depth in _COLLECTABLE:
                kind = (depth, strength, access_count)
                offset = offsets.get(kind)
                if offset is None:
                    offset = offsets[kind] = gc.retention_deadline(
                        Depth(depth), strength, access_count, 0.0, retention)
                deadlines[memory_id] = last_accessed + offset
    moves.memories_read += scanned
    report.total_nodes += len(sigil_of)
    return slots, sigil_of, deadlines


def _true_spirals(section: Section, spirals: dict[str, Spiral], slots: dict[str, _Slots],
                  spiral_turns: int, now: float, report: RebuildReport,
                  writes: list[Write]) -> dict[str, Spiral]:
    keys = section.keys
    truths: dict[str, Spiral] = {}
    for spiral_id in sorted(spirals.keys() | slots.keys()):
        stored = spirals.get(spiral_id)
        group = slots.get(spiral_id, _Slots())
        if stored is None:
            assert group.first_depth is not None
            kind = infer_type(group.radii, SpiralType.preferred_for(group.first_depth))
            report.orphans.nodes.append(spiral_id)
        else:
            kind = stored.type
        moved = _reslot(section, kind, group, spiral_turns, writes)
        report.orphans.reslotted_nodes += moved
        truth = Spiral.from_slots(
            id=spiral_id, tenant=keys.tenant, type=kind, used=group.used,
            depth_tenths=group.depth_tenths,
            created=stored.created if stored else now,
            updated=stored.updated if stored else now,
            spiral_turns=spiral_turns,
        )
        truths[spiral_id] = truth
        if stored is not None and _same(stored, truth):
            report.unchanged_spirals.append(spiral_id)
            continue
        before = stored.stats() if stored else SpiralStats(0, 0.0, 0.0, 0)
        truth = replace(truth, updated=now)
        truths[spiral_id] = truth
        writes.append(Put(keys.spiral(spiral_id), truth.to_json()))
        report.corrected_spirals.append(
            SpiralCorrection(spiral_id, keys.tenant, kind.value, before, truth.stats()))
    return truths


def _same(stored: Spiral, truth: Spiral) -> bool:
    return (stored.stats().close_to(truth.stats()) and stored.holes == truth.holes
            and stored.depth_tenths == truth.depth_tenths
            and stored.capacity == truth.capacity)


def _reslot(section: Section, kind: SpiralType, group: _Slots, spiral_turns: int,
            writes: list[Write]) -> list[str]:
    """Give each node that shares a slot with another a free slot of its own."""
    for memory_id in group.duplicates:
        key = section.keys.memory(memory_id)
        data = section.get(key)
        if data is None:
            continue
        high = max(group.used) + 1 if group.used else 0
        free = next((i for i in range(high) if i not in group.used), high)
        group.used.add(free)
        memory = records.memory(key, data)
        memory = replace(memory, position=geometry.place(kind, free, spiral_turns))
        writes.append(Put(section.keys.memory(memory_id), memory.to_json()))
    return list(group.duplicates)


def _reconcile_counters(section: Section, moves: Quarantine, truths: dict[str, Spiral],
                        report: RebuildReport, writes: list[Write]) -> None:
    keys = section.keys
    stored: dict[str, int | None] = {}
    for key, value in section.read_scan(keys.spiral_counts):
        # A corrupt counter is quarantined, then written again like a missing one.
        stored[key] = moves.read(records.counter, key, value)
    ticks = section.read_many([keys.store_ticks])[0]
    if ticks is not None:
        moves.read(records.counter, keys.store_ticks, ticks)  # a GC hint: quarantined only
    for spiral_id, truth in truths.items():
        key = keys.spiral_count(spiral_id)
        count = stored.pop(key, None)
        if count != truth.node_count:
            report.corrected_counters.append(
                CounterCorrection(key, count, truth.node_count))
            writes.append(Put(key, truth.node_count))
    for key, value in stored.items():
        if value is None:
            continue  # quarantined: already gone
        report.orphans.counters.append(key)
        report.corrected_counters.append(CounterCorrection(key, value, None))
        writes.append(Delete(key))
    total = sum(t.node_count for t in truths.values())
    found = section.read_many([keys.memory_count])[0]
    current = None if found is None else moves.read(records.counter, keys.memory_count,
                                                    found)
    # A tenant never written to has no counter: that is a count of 0, not a drift.
    if current != total and not (current is None and total == 0):
        report.corrected_counters.append(CounterCorrection(keys.memory_count, current, total))
        writes.append(Put(keys.memory_count, total))


def _reconcile_sigils(ctx: Context, section: Section, moves: Quarantine,
                      sigil_of: dict[str, tuple[str, float]], report: RebuildReport,
                      writes: list[Write], heartbeat: Callable[[], None]) -> None:
    """Every memory has the index entry of its sigil; an entry stays only if it names
    a memory that holds that sigil, or one a re-signing left under a key still
    accepted (its grace period). Entries are named by the sigil's hash, and so is
    every orphan in the report: a report never lists a capability. A corrupt entry is
    quarantined, then written again like a missing one.

    The entries are compared with what they should be before any is checked: when
    they agree, each holds a memory id the node's own check passed, so checking it
    again would find nothing (and costs as much as the comparison)."""
    keys = section.keys
    prefix = keys.sigils
    start = len(prefix)
    # Compared by whole keys, read a batch at a time: no Python step per entry.
    stored_at: dict[str, Any] = {}
    for batch in section.read_batches(prefix):
        stored_at.update(batch)
        heartbeat()
    expected_at = dict(zip(index_names([sigil for sigil, _ in sigil_of.values()], prefix),
                           sigil_of, strict=True))
    if stored_at == expected_at:
        return  # every entry names its memory, and every memory has its entry
    heartbeat()
    stored = {key[start:]: value for key, value in stored_at.items()}
    expected = {key[start:]: memory_id for key, memory_id in expected_at.items()}
    keyring, now = ctx.sigils.current(), ctx.clock()
    owner: dict[str, str] = {}
    for name, value in stored.items():
        try:
            owner[name] = records.sigil_owner(prefix + name, value)
        except CorruptRecord as exc:
            moves.move(prefix + name, value, exc.reason)
    for checked, (name, memory_id) in enumerate(owner.items()):
        if not checked % HEARTBEAT_EVERY:
            heartbeat()
        if expected.get(name) == memory_id or _kept_through_grace(
                keyring, keys.tenant, sigil_of, name, memory_id, now):
            continue
        report.orphans.sigils.append(name)
        writes.append(Delete(keys.sigil(name)))
    heartbeat()
    for checked, (name, memory_id) in enumerate(expected.items()):
        if not checked % HEARTBEAT_EVERY:
            heartbeat()
        if owner.get(name) != memory_id:
            report.sigil_fixes += 1
            writes.append(Put(keys.sigil(name), memory_id))


def _kept_through_grace(keyring: Keyring, tenant: str,
                        sigil_of: dict[str, tuple[str, float]], name: str,
                        memory_id: Any, now: float) -> bool:
    if not isinstance(memory_id, str) or memory_id not in sigil_of:
        return False
    current, created = sigil_of[memory_id]
    return name in {index_name(s) for s in keyring.accepted_sigils_of(
        tenant, memory_id, float(created), current, now)}


def _reconcile_queue(section: Section, deadlines: dict[str, float], report: RebuildReport,
                     writes: list[Write], heartbeat: Callable[[], None]) -> None:
    keys = section.keys
    queued = dict(section.index_range(keys.gc_queue))
    if queued == deadlines:
        return  # every score exactly what it should be (as a store leaves it)
    heartbeat()
    for checked, member in enumerate(queued.keys() - deadlines.keys()):
        if not checked % HEARTBEAT_EVERY:
            heartbeat()
        report.orphans.queue_entries.append(member)
        writes.append(IndexRemove(keys.gc_queue, member))
    for checked, (member, deadline) in enumerate(deadlines.items()):
        if not checked % HEARTBEAT_EVERY:
            heartbeat()
        score = queued.get(member)
        if score is None or (score != deadline and not math.isclose(
                score, deadline, rel_tol=1e-12, abs_tol=1e-6)):
            report.queue_fixes += 1
            writes.append(IndexPut(keys.gc_queue, member, deadline))


def _restore_tombstones(ctx: Context, section: Section, moves: Quarantine) -> list[Write]:
    """Quarantine corrupt tombstones and write each again, with the expiry its queue
    entry holds (else a full TTL from now): a collected id stays collected."""
    keys = section.keys
    corrupt = [key for key, value in section.read_scan(keys.tombstones)
               if moves.read(records.tombstone, key, value) is None]
    if not corrupt:
        return []
    expiries = dict(section.index_range(keys.tombstone_queue))
    default = ctx.clock() + ctx.gc.tombstone_ttl_s
    return [Put(key, expiries.get(key[len(keys.tombstones):], default)) for key in corrupt]
