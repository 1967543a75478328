"""Taking a backup: every tenant, one at a time, each read whole under its lock.

A tenant read under its lock is consistent in itself (its totals, spirals, counters,
queue and records agree, as a rebuild would find them); tenants are taken one after
another, so the file is not one instant of the whole store, which no operation needs:
every operation works within one tenant.

A store with a corrupt record (README, "Corrupt records") is refused, naming the
record: a restore would refuse the file. `spiral repair` quarantines it first, and
the quarantine is backed up like any key.

What is kept: every key of every tenant (records, spirals, counters, sigils,
tombstones, store ticks), its ordered indexes with their scores (the GC queue, the
tombstones' expiry queue), and its marker. What is not: locks and generations (who
may write now, not what is stored), claims and the GC cursor (scheduling hints), and
the sigil keys unless asked for (see `Header.sigil_secret` and the README: a file
that carries them is a credential).

Memory records are written as the codec of the store's process writes them: sealed
under its key when it has one (see `fileformat`), so a backup of a sealed store holds
no memory in the clear; in the clear otherwise.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spiral_tasks import records
from spiral_tasks.backup.fileformat import (
    CHECKSUM_PREFIX,
    Header,
    IndexLine,
    KeyLine,
    Line,
    TenantCounts,
    encode,
    trailer,
)
from spiral_tasks.chunked import in_section, kept_alive
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import CorruptRecord
from spiral_tasks.keys import tenant_marker
from spiral_tasks.section import Section
from spiral_tasks.security.keyring import others_to_json


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    header: Header
    bytes: int
    checksum: str
    duration_ms: float

    def to_json(self) -> dict[str, Any]:
        return {"file": str(self.path), "tenants": len(self.header.tenants),
                "keys": self.header.keys, "index_entries": self.header.index_entries,
                "bytes": self.bytes, "checksum": self.checksum,
                "with_secret": self.header.sigil_secret is not None,
                "sealed_under": self.header.sealing_key_id,
                "duration_ms": round(self.duration_ms, 3)}


def tenant_lines(section: Section) -> list[Line]:
    """Every line of the section's tenant, in canonical order (keys, then index
    entries), read under its lock, which is kept alive meanwhile."""
    keys, tenant = section.keys, section.tenant
    lines: list[Line] = []
    marker = section.get(tenant_marker(tenant))
    if marker is not None:
        lines.append(KeyLine(tenant, tenant_marker(tenant), marker))
    for key, value in kept_alive(section, section.scan(keys.namespace)):
        if key in keys.coordination:
            continue
        # A restore refuses a record that is not what its key holds: refuse it now,
        # not in a file that cannot be restored (spiral repair quarantines it).
        problem = records.problem(key, value)
        if problem is not None:
            raise CorruptRecord(key, problem)
        lines.append(KeyLine(tenant, key, value))
    for index in keys.indexes:
        lines += [IndexLine(tenant, index, member, score)
                  for member, score in section.index_range(index)]
    section.fence.extend()  # raises LockLost if the lock went while we read
    lines.sort(key=_order)
    return lines


def _order(line: Line) -> tuple[int, str, str]:
    if isinstance(line, KeyLine):
        return (0, line.key, "")
    return (1, line.index, line.member)


def read_tenant(engine: SpiralMemory, tenant: str) -> list[Line]:
    """The tenant's lines, retried if its lock was lost while they were read (a
    stalled process on Redis): a snapshot is only kept if the lock held throughout."""
    def read(section: Section) -> list[Line]:
        lines = tenant_lines(section)
        section.audit("backup")
        section.commit(final=True)
        return lines

    return in_section(engine.sections, tenant, read)


def take(engine: SpiralMemory, path: Path, *, source: str, with_secret: bool = False,
         on_tenant: Callable[[str], None] | None = None) -> BackupSummary:
    """Write a backup of every tenant of `engine` to `path`. The file appears whole or
    not at all: it is written beside `path` and renamed into place."""
    started = time.perf_counter()
    keyring = engine.context.sigils.current()
    values = engine.storage.codec
    header = Header(created=datetime.now(UTC).isoformat(timespec="seconds"), source=source,
                    sigil_fingerprint=keyring.fingerprint,
                    sigil_secret=keyring.active.secret.decode() if with_secret else None,
                    sigil_others=(others_to_json(keyring.others)["others"] if with_secret
                                  else []),
                    sealing_key_id=values.sealing_key_id)
    path = path.resolve()
    with tempfile.TemporaryFile(dir=path.parent) as body:
        for tenant in engine.tenants():
            counts = header.tenants[tenant] = TenantCounts()
            for line in read_tenant(engine, tenant):
                body.write(encode(line.to_json(values)))
                counts.count(line)
            if on_tenant is not None:
                on_tenant(tenant)
        body.seek(0)
        checksum, size = _assemble(path, encode(header.to_json()), body)
    return BackupSummary(path, header, size, checksum,
                         (time.perf_counter() - started) * 1000)


def _assemble(path: Path, head: bytes, body: Any) -> tuple[str, int]:
    """Header, body and checksum line into `path` (through a temporary name, synced,
    then renamed); returns the checksum and the file's size."""
    digest = hashlib.sha256(head)
    partial = path.with_name(path.name + ".partial")
    lines = 1
    # Readable by its owner only: a backup holds every memory (and maybe the key).
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(head)
        for raw in body:
            digest.update(raw)
            out.write(raw)
            lines += 1
        out.write(trailer(digest.hexdigest(), lines))
        out.flush()
        os.fsync(out.fileno())
        size = out.tell()
    os.replace(partial, path)
    return CHECKSUM_PREFIX + digest.hexdigest(), size
