"""Reading a tenant's audit log back, and checking its chain.

The chain starts at the signed checkpoint (or at entry 1 with the genesis hash), and
every entry must be the next in sequence, follow the one before (`prev`), hash to its
`hash`, and carry a valid signature of it; the last must be the one the signed head
names. The first entry that fails is named with its position in the log (a Redis
stream id, a LevelDB sequence number) and why, which tells removed (a gap in seq),
reordered (a seq out of order), inserted (a bad signature or a repeated seq) and
altered (a hash that does not match) apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spiral_tasks.audit.chain import FIELDS, GENESIS, Signer, entry_hash
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.base import Storage

if TYPE_CHECKING:  # the section writes entries with the journal, which uses `problem`
    from spiral_tasks.section import Sections

PAGE = 1000


@dataclass(frozen=True)
class BadEntry:
    #: Where in the log (None: the head or the checkpoint itself).
    position: str | None
    #: The seq the entry claims (None if it has none), or that was expected.
    seq: int | None
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"position": self.position, "seq": self.seq, "why": self.why}


@dataclass(frozen=True)
class Verdict:
    tenant: str
    entries: int
    #: The seq of the checkpoint the chain starts from (None: from entry 1).
    checkpoint: int | None
    head: int | None
    first_bad: BadEntry | None

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "ok": self.ok, "entries": self.entries,
                "checkpoint": self.checkpoint, "head": self.head,
                "first_bad": None if self.first_bad is None else self.first_bad.to_json()}


def entries(storage: Storage, tenant: str,
            heartbeat: Callable[[], None] = lambda: None) -> Iterator[tuple[str, Any]]:
    """Every (position, entry) of the tenant's log, oldest first, a page at a time
    (`heartbeat` before each: a caller under the tenant's lock keeps it so)."""
    log = TenantKeys(tenant).audit_log
    after: str | None = None
    while True:
        heartbeat()
        page = storage.log_read(log, after, PAGE)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1][0]


def problem(signer: Signer, tenant: str, entry: Any, seq: int, prev: str) -> str | None:
    """Why `entry` is not the valid entry `seq` following hash `prev` (None: it is)."""
    return _genuine(signer, tenant, entry) or _in_place(entry, seq, prev)


def _genuine(signer: Signer, tenant: str, entry: Any) -> str | None:
    """Why `entry` is not an unaltered entry this deployment wrote for `tenant`."""
    if not isinstance(entry, dict) or any(k not in entry for k in (*FIELDS, "hash")):
        return "is not an audit entry (fields missing)"
    if entry["hash"] != entry_hash(entry):
        return "was altered: its fields do not hash to its hash"
    if not signer.valid(entry.get("mac"), "entry", entry["hash"]):
        return "was not written by this deployment: its signature does not verify " \
               "(inserted or forged)"
    if entry["tenant"] != tenant:
        return f"belongs to tenant {entry['tenant']!r} (copied from its log)"
    return None


def _in_place(entry: dict[str, Any], seq: int, prev: str) -> str | None:
    """Why a genuine `entry` is not entry `seq`, following hash `prev`."""
    if entry["seq"] != seq:
        claimed = entry["seq"]
        if isinstance(claimed, int) and claimed > seq:
            return f"is entry {claimed} where entry {seq} was expected: entry {seq} " \
                   "was removed (or the entries were reordered)"
        return f"is entry {claimed} where entry {seq} was expected: reordered or replayed"
    if entry["prev"] != prev:
        return f"does not follow entry {seq - 1}: its prev hash differs"
    return None


def verify(storage: Storage, signer: Signer, tenant: str,
           heartbeat: Callable[[], None] = lambda: None) -> Verdict:
    """Check the tenant's whole chain; the verdict names the first bad entry. Run it
    under the tenant's lock (`verify_locked`): a commit or a retention trim landing
    between reading the head and reading the entries would look like tampering."""
    keys = TenantKeys(tenant)
    head, point = storage.get_many([keys.audit_head, keys.audit_checkpoint])
    seq, prev, start = 1, GENESIS, None
    if point is not None:
        if not isinstance(point, dict) or not signer.checkpoint_valid(tenant, point):
            return Verdict(tenant, 0, None, None,
                           BadEntry(None, None, "the checkpoint's signature does not verify"))
        seq, prev, start = int(point["seq"]) + 1, str(point["hash"]), int(point["seq"])
    count = 0
    for position, entry in entries(storage, tenant, heartbeat):
        why = problem(signer, tenant, entry, seq, prev)
        if why is not None:
            claimed = entry.get("seq") if isinstance(entry, dict) else None
            return Verdict(tenant, count, start, None, BadEntry(
                position, claimed if isinstance(claimed, int) else None, f"entry {why}"))
        count, seq, prev = count + 1, seq + 1, entry["hash"]
    return Verdict(tenant, count, start, _head_seq(head),
                   _head_problem(signer, tenant, head, seq - 1, prev, count or start))


def _head_seq(head: Any) -> int | None:
    return head.get("seq") if isinstance(head, dict) else None


def _head_problem(signer: Signer, tenant: str, head: Any, last: int, digest: str,
                  anything: int | None) -> BadEntry | None:
    if head is None:
        return None if not anything else BadEntry(
            None, None, "the head is missing: the log's end cannot be checked")
    if not isinstance(head, dict) or not signer.head_valid(tenant, head):
        return BadEntry(None, None, "the head's signature does not verify")
    if head["seq"] != last or head["hash"] != digest:
        if isinstance(head["seq"], int) and head["seq"] > last:
            return BadEntry(None, last + 1, f"entries {last + 1} to {head['seq']} were "
                            f"removed from the end (the head names entry {head['seq']})")
        return BadEntry(None, last, f"the head names entry {head['seq']}, not the last "
                        f"entry {last}")
    return None


def verify_locked(sections: Sections, signer: Signer, tenant: str) -> Verdict:
    """`verify` under the tenant's lock, kept alive page by page."""
    with sections.enter(tenant) as section:
        return verify(sections.storage, signer, tenant, section.fence.extend)
