"""The audit entries a commit appends, staged in the commit they record.

A section collects events (`Section.audit`) while it stages writes; its commit asks
the journal for the log writes and passes them to the fenced commit with everything
else, so an operation and its entry land together or not at all (a commit refused by
a lost lock or a stale generation writes neither).

The chain's end (the head) is read in the lock's own round trip (`Sections.enter`
asks for it) and replaced in the same commit. Two sections of one tenant never commit
at once (the tenant's lock, and on Redis the fence that refuses a writer whose lock
expired), so the head read under the lock is the head the commit extends: no entry
can slip in between.

Retention: every `TRIM_EVERY` entries, when a retention is configured, the entries
older than it are removed in the same commit, and a signed checkpoint (seq and hash of
the last one removed) replaces them. Only entries that verify are trimmed, so a
tampered entry is never laundered into a checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from spiral_tasks.audit.actor import Actor
from spiral_tasks.audit.chain import GENESIS, Signer
from spiral_tasks.audit.verify import PAGE, problem
from spiral_tasks.frozen import quick_init
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.base import (
    CheckedLogAppend,
    CheckedPut,
    LogAppend,
    LogTrim,
    Put,
    Storage,
    Write,
)

#: Entries between two looks at what retention may trim.
TRIM_EVERY = 100


@quick_init
@dataclass(frozen=True)
class Event:
    """One operation's part of a commit, as its entry will say it."""

    op: str
    ids: tuple[str, ...]
    actor: Actor


class Journal:
    def __init__(self, signer: Signer, retention_s: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.retention_s = retention_s
        self.clock = clock

    def writes(self, storage: Storage, keys: TenantKeys, head: Any,
               events: Sequence[Event]) -> tuple[list[Write], dict[str, Any]]:
        """The log writes for `events` after `head` (the head as the lock read it),
        and the new head."""
        seq, prev = _chain_end(head)
        first = seq + 1
        now = self.clock()
        finite = now - now == 0.0
        writes: list[Write] = []
        for event in events:
            seq += 1
            actor = event.actor
            entry = self.signer.seal({
                "seq": seq, "prev": prev, "tenant": keys.tenant, "op": event.op,
                "ids": list(event.ids), "task": actor.task,
                "worker": actor.worker, "time": now})
            # Every field is a string, an int or a finite time: the entry needs no
            # round trip. An actor or ids of another type (a task id a client made up)
            # get one, which refuses what JSON cannot keep.
            checked = finite and type(actor.task) in _TEXT and type(actor.worker) in _TEXT \
                and set(map(type, event.ids)) <= _STR
            writes.append((CheckedLogAppend if checked else LogAppend)(
                keys.audit_log, seq, entry))
            prev = entry["hash"]
        new_head = self.signer.head(keys.tenant, seq, prev)
        writes.append(CheckedPut(keys.audit_head, new_head))  # an int and hex strings
        if self.retention_s > 0 and (first - 1) // TRIM_EVERY != seq // TRIM_EVERY:
            writes += self._trim(storage, keys, now - self.retention_s)
        return writes, new_head

    def _trim(self, storage: Storage, keys: TenantKeys, cutoff: float) -> list[Write]:
        """Remove what is older than `cutoff` (one page at most), leaving a checkpoint."""
        point = storage.get(keys.audit_checkpoint)
        seq, prev = _chain_end(point)
        last: tuple[str, dict[str, Any]] | None = None
        for position, entry in storage.log_read(keys.audit_log, None, PAGE):
            if problem(self.signer, keys.tenant, entry, seq + 1, prev) is not None \
                    or entry["time"] >= cutoff:
                break
            last, seq, prev = (position, entry), seq + 1, entry["hash"]
        if last is None:
            return []
        position, entry = last
        return [LogTrim(keys.audit_log, position),
                Put(keys.audit_checkpoint, self.signer.checkpoint(
                    keys.tenant, entry["seq"], entry["hash"], entry["time"]))]


#: The types an actor's fields may have for its entry to need no round trip.
_TEXT = frozenset({str, type(None)})
_STR = frozenset({str})


def _chain_end(point: Any) -> tuple[int, str]:
    """(seq, hash) of a head or checkpoint; (0, genesis) for none or a malformed one
    (which verification reports)."""
    if isinstance(point, dict) and isinstance(point.get("seq"), int) \
            and isinstance(point.get("hash"), str):
        return point["seq"], point["hash"]
    return 0, GENESIS
