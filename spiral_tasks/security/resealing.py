"""Key rotation (`spiral rotate-key`): every memory record re-sealed under the key
this process seals with, tenant by tenant under each tenant's lock.

Run it with the new key as `SPIRAL_ENCRYPTION_KEY` and the old one in
`SPIRAL_DECRYPTION_KEYS`, once every worker seals with the new key and still opens
with the old (ops/RUNBOOK.md gives the steps). Workers keep serving meanwhile: a
tenant's records are re-sealed under its lock, in atomic chunks, so an operation on
that tenant waits a moment and then finds every record openable (under either key).
Records found in the clear (a store that held data before it had a key) are sealed
the same way.

Resumable by construction: the state is in the records themselves (each names its
key id), a record already under the current key is left alone, and each chunk
commits whole or not at all. A rotation killed at any point (SIGKILL included) is
finished by running it again; its lock expires meanwhile (`SPIRAL_LOCK_TTL_S`).

When every tenant is done, a last pass (without locks) looks for records still under
another key (a worker that still seals with the old one wrote them since): if there
are none, the store's markers of other keys (and `plain`) are removed, so a process
holding only an old key is refused at start from then on; if there are some, the
markers stay and the report says how many, to run again once every worker has the
new key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from spiral_tasks.backup.restore import target_tenants
from spiral_tasks.chunked import in_section, kept_alive
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import SpiralError
from spiral_tasks.keys import SEALING_PLAIN_KEY, TenantKeys, sealing_marker
from spiral_tasks.section import Section
from spiral_tasks.security import envelope
from spiral_tasks.security.atrest import read_markers
from spiral_tasks.security.sealing import SealingCodec
from spiral_tasks.storage.base import Delete, Put, Storage

#: How long a rotation waits for a tenant's lock: long enough for the lock of a
#: rotation killed mid-tenant to expire (its TTL), while workers keep taking it.
LOCK_WAIT_S = 30.0


class NoSealingKey(SpiralError):
    """The process has no key to seal with: nothing was done."""


@dataclass
class TenantRotation:
    tenant: str
    #: Records re-sealed under the current key (or, in a dry run, that would be).
    resealed: int = 0
    #: Of those, records that were in the clear.
    unsealed: int = 0
    #: Records already under the current key, left alone.
    current: int = 0
    #: Re-sealed records by the key id they were under ("plain": in the clear).
    sources: dict[str, int] = field(default_factory=dict)

    def count(self, key_id: str | None) -> None:
        self.resealed += 1
        self.unsealed += key_id is None
        name = key_id or "plain"
        self.sources[name] = self.sources.get(name, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "resealed": self.resealed,
                "unsealed": self.unsealed, "current": self.current,
                "sources": dict(sorted(self.sources.items()))}


@dataclass
class RotationReport:
    key_id: str
    dry_run: bool
    tenants: list[TenantRotation] = field(default_factory=list)
    #: Records the last pass found under another key (or in the clear).
    left: int = 0
    markers_removed: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def resealed(self) -> int:
        return sum(t.resealed for t in self.tenants)

    @property
    def current(self) -> int:
        return sum(t.current for t in self.tenants)

    @property
    def complete(self) -> bool:
        """Every record is under the current key (a dry run: nothing to re-seal)."""
        return self.left == 0

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "dry_run": self.dry_run,
                "tenants": [t.to_json() for t in self.tenants],
                "resealed": self.resealed, "current": self.current, "left": self.left,
                "complete": self.complete, "markers_removed": self.markers_removed,
                "duration_ms": round(self.duration_ms, 3)}


def sealing_codec(storage: Storage) -> tuple[SealingCodec, str]:
    """The store's codec and the key id it seals under; `NoSealingKey` if none."""
    codec = storage.codec
    if not isinstance(codec, SealingCodec) or codec.sealing_key_id is None:
        raise NoSealingKey("no encryption key to seal with: set SPIRAL_ENCRYPTION_KEY (or "
                           "SPIRAL_ENCRYPTION_KEY_FILE) to the new key, and the old one in "
                           "SPIRAL_DECRYPTION_KEYS")
    return codec, codec.sealing_key_id


def rotate(engine: SpiralMemory, *, dry_run: bool = False,
           on_tenant: Callable[[TenantRotation], None] | None = None) -> RotationReport:
    """Re-seal every memory record of `engine`'s store under its sealing key (see the
    module's doc). `dry_run`: count and open them, write nothing. Raises `SealBroken`
    for a record that does not open (a key missing from SPIRAL_DECRYPTION_KEYS, a
    damaged record): the tenants before it are done, running again resumes."""
    started = time.perf_counter()
    codec, current = sealing_codec(engine.storage)
    reader = codec.lenient()
    report = RotationReport(current, dry_run)
    tenants = target_tenants(engine)
    for tenant in tenants:
        done = in_section(engine.sections, tenant,
                          lambda section: _reseal(section, reader, current, dry_run),
                          timeout_s=LOCK_WAIT_S)
        report.tenants.append(done)
        if on_tenant is not None:
            on_tenant(done)
    if dry_run:
        report.left = report.resealed
    else:
        report.left = sum(_left_elsewhere(engine.storage, tenant, current)
                          for tenant in tenants)
        if report.left == 0:
            report.markers_removed = _drop_other_markers(engine.storage, current)
    report.duration_ms = (time.perf_counter() - started) * 1000
    return report


def _sealed_prefixes(keys: TenantKeys) -> tuple[str, ...]:
    """Where a tenant's sealed values are: its memory records, and the memory records
    a rebuild quarantined."""
    return (keys.memories, keys.quarantined_memories)


def _left_elsewhere(storage: Storage, tenant: str, current: str) -> int:
    """How many of the tenant's records are not under `current` (read without a lock:
    the last pass only looks for records written meanwhile under another key)."""
    return sum(1 for prefix in _sealed_prefixes(TenantKeys(tenant))
               for _, raw in storage.scan_stored(prefix)
               if envelope.key_id_of(raw) != current)


def _reseal(section: Section, reader: SealingCodec, current: str,
            dry_run: bool) -> TenantRotation:
    done = TenantRotation(section.tenant)
    memories = section.keys.memories

    def writes() -> Iterator[Put]:
        stored = (item for prefix in _sealed_prefixes(section.keys)
                  for item in section.scan_stored(prefix))
        for key, raw in kept_alive(section, stored):
            key_id = envelope.key_id_of(raw)
            if key_id == current:
                done.current += 1
                continue
            value = reader.decode(key, raw)  # refused if it does not open
            done.count(key_id)
            if not dry_run and key.startswith(memories):
                # Recorded in the audit log by the commit of the chunk that re-seals it.
                section.audit("rotate-key", [key[len(memories):]])
            yield Put(key, value)

    if dry_run:
        for _ in writes():
            pass
    else:
        section.commit_in_chunks(writes(), final=True)
    return done


def _drop_other_markers(storage: Storage, current: str) -> list[str]:
    markers = read_markers(storage)
    names = [sealing_marker(i) for i in sorted(markers.key_ids - {current})]
    if markers.plain:
        names.append(SEALING_PLAIN_KEY)
    if names:
        storage.apply([Delete(name) for name in names])
    return names
