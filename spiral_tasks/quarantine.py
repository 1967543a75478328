"""Quarantine: where a rebuild moves a corrupt record, and what it says of it.

A corrupt record (bytes that do not decode, a value of the wrong shape, another
record's content; see `records`) cannot be repaired, since what it held is unknown,
and must not stay where operations read it: every store placing into its spiral,
every retrieve of its id would fail on it. The rebuild moves it, under the tenant's
lock and in the same commits as its corrections, to
`t:{T}:quarantine:<rest of its key>@<ms>`, in an envelope that keeps its key, why it
was moved, when, and what was there (the bytes, base64, when they did not decode;
the value otherwise). A quarantined record no longer counts: the rebuild computes the
tenant's counts from the records left, so the invariant holds over what is actually
in storage, and a memory whose record was quarantined is simply gone until an
operator brings it back (README, "Corrupt records"; `spiral quarantine`).

A rebuild that finds most of a tenant's memory records unreadable refuses instead
(`QuarantineRefused`, which the rebuild reports and passes, leaving the tenant as it
was): that is what a wrong key or codec looks like, not corruption, and moving every
record aside for it would empty the tenant.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from spiral_tasks import records
from spiral_tasks.errors import CorruptRecord, InvalidArgument, QuarantineRefused
from spiral_tasks.keys import TenantKeys
from spiral_tasks.section import Sections
from spiral_tasks.storage.base import Delete, Put, Unreadable, Write

#: A rebuild refuses to quarantine when at least this many of a tenant's memory
#: records do not decode and they are more than half of them.
MASS_UNREADABLE_MIN = 10

T = TypeVar("T")


@dataclass(frozen=True)
class Quarantined:
    """One record moved aside: its key, why, and where it went."""

    key: str
    reason: str
    moved_to: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "reason": self.reason, "moved_to": self.moved_to}


def envelope(key: str, found: Any, reason: str, now: float) -> dict[str, Any]:
    """What a quarantine key holds: enough to judge the record and bring it back."""
    body: dict[str, Any] = {"key": key, "reason": reason, "quarantined_at": now}
    if isinstance(found, Unreadable):
        body["raw_base64"] = base64.b64encode(found.raw).decode()
    else:
        body["value"] = found
    return body


@dataclass
class Quarantine:
    """The records of one tenant's rebuild that are read through it, and the moves of
    those that are corrupt."""

    keys: TenantKeys
    now: float
    moved: list[Quarantined] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    memories_read: int = 0
    memories_unreadable: int = 0

    def read(self, reader: Callable[[str, Any], T], key: str, value: Any) -> T | None:
        """`reader(key, value)`, or None after staging the record's move if it is
        corrupt."""
        try:
            return reader(key, value)
        except CorruptRecord as exc:
            self.move(key, value, exc.reason)
            return None

    def read_memory(self, reader: Callable[[str, Any], T], key: str, value: Any) -> T | None:
        """`read` for a memory record, counted for the mass-unreadable check."""
        self.memories_read += 1
        self.memories_unreadable += isinstance(value, Unreadable)
        return self.read(reader, key, value)

    def move(self, key: str, found: Any, reason: str) -> None:
        target = self.keys.quarantined(key, int(self.now * 1000))
        self.moved.append(Quarantined(key, reason, target))
        # Put, then Delete, side by side: a rebuild's commits keep each pair together.
        self.writes += [Put(target, envelope(key, found, reason, self.now)), Delete(key)]

    def check(self) -> None:
        """Refuse when the unreadable records look like a wrong key, not corruption."""
        bad, seen = self.memories_unreadable, self.memories_read
        if bad >= MASS_UNREADABLE_MIN and bad * 2 > seen:
            raise QuarantineRefused(
                f"tenant {self.keys.tenant!r}: {bad} of its {seen} memory records do not "
                "decode, which looks like a wrong key or codec rather than corruption; "
                "nothing was quarantined. Check the storage settings (the backend, its "
                "URL or folder, the keys) and rebuild again")


# --- what an operator does with it (spiral quarantine) ---------------------------------

def listed(sections: Sections, tenant: str) -> list[tuple[str, dict[str, Any]]]:
    """The tenant's quarantine: (where, envelope) of every record moved there."""
    with sections.enter(tenant) as section:
        return [(key, records.quarantined(key, value))
                for key, value in section.scan(section.keys.quarantine)]


def purge(sections: Sections, tenant: str, keys: list[str]) -> None:
    """Delete quarantined records, by where they are: all of `keys` or none (an
    operator who dealt with them). `InvalidArgument` names the first key that is not
    in the tenant's quarantine."""
    with sections.enter(tenant) as section:
        prefix = section.keys.quarantine
        found = section.read_many(keys)
        for key, value in zip(keys, found, strict=True):
            if not key.startswith(prefix) or value is None:
                raise InvalidArgument("key", f"{key[:120]!r} is not in tenant "
                                      f"{tenant!r}'s quarantine")
        section.stage(*(Delete(key) for key in keys))
        section.commit(final=True)
