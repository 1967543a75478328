"""Restoring a backup into any backend: check everything first, then write tenant by
tenant under each tenant's lock.

Before the first write: the whole file is verified (`fileformat.verify`: header,
counts, checksum, every key in its tenant's namespace, every value decoding as what
its key holds), and the target must hold no tenant unless `replace` is given; a
refusal leaves the target exactly as it was. Then each tenant is written in chunks
under its lock (kept alive between chunks); with `replace`, the target's tenants are
emptied first, each in the same hold of its lock as its new data, so no operation
ever sees a tenant half replaced. Every commit gives the tenant a new generation, so
workers already running on a Redis target drop what they had cached of it.

A restore that fails half-way (a lost connection) has written some tenants: run it
again with `replace`.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spiral_tasks.backup.fileformat import BackupRefused, Header, KeyLine, Line, records, verify
from spiral_tasks.chunked import commit_chunks
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import SpiralError
from spiral_tasks.keys import SIGIL_SECRET_KEY, hash_tag, tenant_marker
from spiral_tasks.section import Section
from spiral_tasks.storage.base import Delete, IndexPut, IndexRemove, Put, Write


class TargetNotEmpty(SpiralError):
    """The target holds tenants and `replace` was not given: nothing was written."""


@dataclass
class RestoreSummary:
    header: Header
    replaced: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rebuild_clean: bool = True
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"tenants": len(self.header.tenants), "keys": self.header.keys,
                "index_entries": self.header.index_entries, "replaced": self.replaced,
                "warnings": self.warnings, "rebuild_clean": self.rebuild_clean,
                "duration_ms": round(self.duration_ms, 3)}


def target_tenants(engine: SpiralMemory) -> list[str]:
    """Every tenant the target holds anything of: its marker, or any key."""
    found = set(engine.tenants())
    found.update(tag for key in engine.storage.keys("t:")
                 if (tag := hash_tag(key)) is not None)
    return sorted(found)


def restore(engine: SpiralMemory, path: Path, *, replace: bool = False,
            secret_configured: bool = False,
            on_lines: Callable[[int], None] | None = None) -> RestoreSummary:
    """Restore the backup at `path` into `engine`'s storage (see the module's doc).
    `secret_configured`: the target signs with SPIRAL_SIGIL_SECRET, so a key carried
    by the file is not installed. Raises `BackupRefused` or `TargetNotEmpty` before
    writing anything."""
    started = time.perf_counter()
    stamp = _stamp(path)
    values = engine.storage.codec
    header = verify(path, values)
    present = target_tenants(engine)
    if present and not replace:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more"
                                          if len(present) > 5 else "")
        raise TargetNotEmpty(f"the target already holds {len(present)} tenant(s) ({shown}): "
                             "restore into an empty store, or pass --replace to replace "
                             "its contents with the backup's")
    if _stamp(path) != stamp:
        raise BackupRefused(f"{path} changed while it was being verified")
    summary = RestoreSummary(header, replaced=present)
    summary.warnings += _sigil_key(engine, header, secret_configured)
    for tenant in sorted(set(present) - set(header.tenants)):
        with engine.sections.enter(tenant) as section:
            _empty(section)
            section.commit(final=True)
    for tenant, lines in itertools.groupby(records(path, values), key=lambda line: line.tenant):
        with engine.sections.enter(tenant) as section:
            if tenant in present:
                _empty(section)
            _write(section, lines, on_lines)
    summary.rebuild_clean = all(engine.rebuild_stats(t, dry_run=True).clean
                                for t in header.tenants)
    summary.duration_ms = (time.perf_counter() - started) * 1000
    return summary


def _stamp(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


def _sigil_key(engine: SpiralMemory, header: Header, configured: bool) -> list[str]:
    """Install the file's sigil key when it carries one and the target configures
    none; otherwise say when the target signs under another key than the source."""
    mine = engine.context.sigils.fingerprint
    if header.sigil_fingerprint == mine or not header.tenants:
        return []
    if header.sigil_secret is not None and not configured:
        engine.storage.set(SIGIL_SECRET_KEY, header.sigil_secret)
        return ["installed the backup's sigil key: workers already running keep the key "
                "they loaded until they restart"]
    return [f"the backup's memories were signed under another sigil key (fingerprint "
            f"{header.sigil_fingerprint}; this store's: {mine}): their sigils stay as "
            "stored, new memories are signed under this store's key. To keep one key, set "
            "SPIRAL_SIGIL_SECRET to the source's, or back up with --with-secret"]


def _empty(section: Section) -> None:
    """Stage and commit the removal of everything the tenant holds (by name: nothing
    is decoded, so records sealed under a key this process lacks go too)."""
    keys = section.keys
    writes: list[Write] = [Delete(k) for k, _ in section.scan_stored(keys.namespace)
                           if k not in keys.coordination]
    writes.append(Delete(tenant_marker(section.tenant)))
    writes += [IndexRemove(index, member) for index in keys.indexes
               for member, _ in section.index_range(index)]
    commit_chunks(section, writes, None)


def _write(section: Section, lines: Iterable[Line],
           on_lines: Callable[[int], None] | None) -> None:
    writes = (Put(line.key, line.value) if isinstance(line, KeyLine)
              else IndexPut(line.index, line.member, line.score) for line in lines)
    commit_chunks(section, writes, on_lines, final=True)
