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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spiral_tasks.backup.fileformat import BackupRefused, Header, KeyLine, Line, records, verify
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import SpiralError
from spiral_tasks.keys import TenantKeys, hash_tag, tenant_marker
from spiral_tasks.section import Section
from spiral_tasks.security.keyring import others_from_json, write_stored
from spiral_tasks.security.sigils import key_id, well_formed
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
                 if (tag := hash_tag(key)) is not None
                 and key not in TenantKeys(tag).coordination)
    return sorted(found)


def restore(engine: SpiralMemory, path: Path, *, replace: bool = False,
            on_lines: Callable[[int], None] | None = None) -> RestoreSummary:
    """Restore the backup at `path` into `engine`'s storage (see the module's doc).
    Sigil keys carried by the file are installed unless the target configures its own
    (SPIRAL_SIGIL_SECRET). Raises `BackupRefused` or `TargetNotEmpty` before writing
    anything."""
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
    summary.warnings += _install_keys(engine, header)
    for tenant in sorted(set(present) - set(header.tenants)):
        with engine.sections.enter(tenant) as section:
            _empty(section)
            section.audit("restore")
            section.commit(final=True)
    signers: Counter[str] = Counter()
    for tenant, lines in itertools.groupby(records(path, values), key=lambda line: line.tenant):
        with engine.sections.enter(tenant) as section:
            if tenant in present:
                _empty(section)
            section.audit("restore")
            _write(section, _noting_signers(lines, signers), on_lines)
    summary.warnings += _unaccepted(engine, signers)
    summary.rebuild_clean = all(engine.rebuild_stats(t, dry_run=True).clean
                                for t in header.tenants)
    summary.duration_ms = (time.perf_counter() - started) * 1000
    return summary


def _stamp(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


def _install_keys(engine: SpiralMemory, header: Header) -> list[str]:
    """Install the file's sigil keys (the signing one and those it still accepted)
    when it carries them, they differ from the target's, and the target configures
    none of its own."""
    source = engine.context.sigils
    if (header.sigil_secret is None or source.configured or not header.tenants
            or (header.sigil_fingerprint == source.current().fingerprint
            and not header.sigil_others)):
        return []
    installed = write_stored(engine.storage, header.sigil_secret,
                             others_from_json({"others": header.sigil_others}))
    source.reload()
    return [f"installed the backup's sigil keys (signing key id {installed.active.kid}, "
            f"{len(installed.others)} other(s) accepted): workers already running on "
            "this store read them within SPIRAL_SIGIL_REFRESH_S"]


def _noting_signers(lines: Iterable[Line], signers: Counter[str]) -> Iterator[Line]:
    """`lines`, counting the key id of each memory record's sigil on the way."""
    for line in lines:
        if isinstance(line, KeyLine) and line.key.startswith(TenantKeys(line.tenant).memories):
            sigil = line.value["sigil"]
            signers[key_id(sigil) if well_formed(sigil) else LEGACY] += 1
        yield line


#: How a restore names sigils of the layout before key ids.
LEGACY = "(before key ids)"


def _unaccepted(engine: SpiralMemory, signers: Counter[str]) -> list[str]:
    """Say how many restored memories hold sigils this store refuses, and what to do."""
    keyring = engine.context.sigils.current()
    accepted = keyring.accepted_kids(engine.context.clock())
    refused = {kid: n for kid, n in signers.items() if kid not in accepted}
    if not refused:
        return []
    return [f"{sum(refused.values())} of the backup's memories were signed under another "
            f"sigil key (key ids {', '.join(sorted(refused))}; this store signs under "
            f"{keyring.active.kid} and accepts {', '.join(sorted(accepted))}): "
            "spiral.retrieve_by_sigil refuses their sigils. Give them sigils under this "
            "store's key with spiral rotate-sigil-secret --resign-only (their holders then "
            "need the new ones, which spiral.retrieve_memory returns), or accept the "
            "source's key here: SPIRAL_SIGIL_OLD_SECRETS, or a backup taken with "
            "--with-secret restored into a store without SPIRAL_SIGIL_SECRET"]


def _empty(section: Section) -> None:
    """Stage and commit the removal of everything the tenant holds (by name: nothing
    is decoded, so records sealed under a key this process lacks go too)."""
    keys = section.keys
    writes: list[Write] = [Delete(k) for k, _ in section.scan_stored(keys.namespace)
                           if k not in keys.coordination]
    writes.append(Delete(tenant_marker(section.tenant)))
    writes += [IndexRemove(index, member) for index in keys.indexes
               for member, _ in section.index_range(index)]
    section.commit_in_chunks(writes)


def _write(section: Section, lines: Iterable[Line],
           on_lines: Callable[[int], None] | None) -> None:
    writes = (Put(line.key, line.value) if isinstance(line, KeyLine)
              else IndexPut(line.index, line.member, line.score) for line in lines)
    section.commit_in_chunks(writes, final=True, on_chunk=on_lines)
