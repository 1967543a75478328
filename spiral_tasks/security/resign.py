"""Re-signing: every memory gets a sigil under the signing key.

After a rotation the memories stored before it still hold sigils under the old key,
which work only while that key is accepted. Re-signing gives each such memory a new
sigil under the signing key (written into its record, so the owner reads it with
`spiral.retrieve_memory`, and a holder of the old one with
`spiral.retrieve_by_sigil`) and a new index entry. The old entry stays while its key
is accepted, so no holder loses access before the grace period ends; an entry under
a key no longer accepted (or of the layout before key ids) is removed at once. A
collection deletes both entries (see `collect.remove`); rebuild drops the old ones
once their key is retired.

Each tenant is done whole under its lock, its commits chunked with the lock kept
alive. Running it again does nothing more: a memory already under the signing key is
left alone, so an interrupted run is finished by running it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from spiral_tasks.context import Context
from spiral_tasks.model import Memory
from spiral_tasks.section import Section, Sections, StateUse
from spiral_tasks.security.sigils import Keyring, index_name, key_id, well_formed
from spiral_tasks.storage.base import Delete, Put, Write

#: Records read between two extensions of the tenant's lock.
EXTEND_EVERY = 1000


@dataclass
class ResignReport:
    key_id: str = ""
    tenants: list[str] = field(default_factory=list)
    memories: int = 0
    resigned: int = 0
    #: Index entries removed because their sigil's key is no longer accepted.
    dropped: int = 0
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "tenants": len(self.tenants),
                "memories": self.memories, "resigned": self.resigned,
                "dropped_entries": self.dropped, "duration_ms": round(self.duration_ms, 3)}


def resign(ctx: Context, sections: Sections, tenants: Sequence[str], *,
           on_tenant: Callable[[str], None] | None = None) -> ResignReport:
    """Re-sign every memory of `tenants` not under the signing key (read afresh)."""
    started = time.perf_counter()
    keyring = ctx.sigils.reload()
    report = ResignReport(key_id=keyring.active.kid)
    for tenant in tenants:
        # PRESERVE: records change, the spirals and totals do not, so a cached state
        # stays good at the commit's new generation.
        with sections.enter(tenant, state=StateUse.PRESERVE) as section:
            writes = _tenant(section, keyring, ctx.clock(), report)
            if writes:
                section.commit_in_chunks(writes, final=True)
        report.tenants.append(tenant)
        if on_tenant is not None:
            on_tenant(tenant)
    report.duration_ms = (time.perf_counter() - started) * 1000
    return report


def _tenant(section: Section, keyring: Keyring, now: float,
            report: ResignReport) -> list[Write]:
    keys, tenant = section.keys, section.tenant
    active, accepted = keyring.active.kid, keyring.accepted_kids(now)
    writes: list[Write] = []
    for count, (_, data) in enumerate(section.scan(keys.memories), start=1):
        if count % EXTEND_EVERY == 0:
            section.fence.extend()
        report.memories += 1
        memory = Memory.from_json(data)
        old = memory.sigil
        if well_formed(old) and key_id(old) == active:
            continue
        new = keyring.sign(tenant, memory.id, memory.created)
        writes += [Put(keys.memory(memory.id), replace(memory, sigil=new).to_json()),
                   Put(keys.sigil(index_name(new)), memory.id)]
        if not (well_formed(old) and key_id(old) in accepted):
            writes.append(Delete(keys.sigil(index_name(old))))
            report.dropped += 1
        report.resigned += 1
    return writes
