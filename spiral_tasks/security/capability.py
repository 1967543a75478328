"""Reading a memory by its sigil: the capability check.

A sigil opens its memory only in its own tenant, only while that memory lives, and
only while the key it names is accepted. Every refusal looks the same from outside:
the same answer (None, never an error naming the check that failed) after the same
work, so neither the answer nor its timing tells a forged sigil from a truncated
one, another tenant's, a collected memory's or one under a retired key.

The work, whatever the sigil: one regular-expression match, one read of the sigil's
index entry in the tenant (`t:{tenant}:sigil:<sha256 of the sigil>`), one read of the
record it names, one HMAC and one constant-time comparison. A sigil that is not
well formed, or names no accepted key, is replaced by a decoy before the reads (the
decoy's entry never exists), and a missing entry by a decoy id (no record ever has
it), so a refusal reads and computes what an acceptance does. The checks are then
combined without branching on the first that failed.

The index entry is written in the same atomic batch as the memory's record and
deleted in the same batch as its collection, eviction or GC: a collected memory's
sigil stops at once, and since `created` is signed, it stays dead even if the id is
stored again later. Why an index and not a sigil that carries the id: an id inside
the sigil would make sigils as long as ids (up to 128 characters) and show the id to
whoever holds one; the index keeps sigils short, fixed and opaque, costs one O(1)
read, and is what rebuild already reconciles.

No lock is taken: the entry and the record are written and deleted together, so two
plain reads see both or neither (a collection between them leaves the record
missing: refused). Reading by sigil changes nothing, not even the access time: a
capability to read does not let its holder keep a memory from the GC, nor contend
for the tenant's lock with a flood of guesses.
"""

from __future__ import annotations

import hmac

from spiral_tasks.keys import TenantKeys
from spiral_tasks.model import Memory
from spiral_tasks.security.sigils import (
    DECOY_ID,
    DECOY_KEY,
    DECOY_SIGIL,
    Keyring,
    index_name,
    key_id,
    well_formed,
)
from spiral_tasks.storage.base import Storage
from spiral_tasks.validation import MEMORY_ID_PATTERN


def retrieve_by_sigil(storage: Storage, keyring: Keyring, tenant: str, sigil: str,
                      now: float) -> Memory | None:
    """The memory `sigil` opens in `tenant` (validated by the caller), or None."""
    formed = well_formed(sigil)
    key = keyring.verifier(key_id(sigil) if formed else "", now)
    usable = formed and key is not None
    presented = sigil if usable else DECOY_SIGIL
    keys = TenantKeys(tenant)
    named = storage.get(keys.sigil(index_name(presented)))
    # An entry that names no valid id (storage tampered with) is a missing one.
    memory_id = named if isinstance(named, str) and MEMORY_ID_PATTERN.fullmatch(named) \
        else DECOY_ID
    record = storage.get(keys.memory(memory_id))
    created = _created(record)
    expected = (key or DECOY_KEY).sign(tenant, memory_id, created)
    # Every check is evaluated, then combined: no branch on which one failed.
    matches = hmac.compare_digest(expected, presented)
    belongs = (isinstance(record, dict) and record.get("id") == memory_id
               and record.get("tenant") == tenant)
    if not (matches & usable & belongs):
        return None
    assert isinstance(record, dict)
    return Memory.from_json(record)


def _created(record: object) -> float:
    """The record's creation time, or 0.0 when there is no usable record (so the HMAC
    is computed either way)."""
    if isinstance(record, dict):
        created = record.get("created")
        if isinstance(created, int | float) and not isinstance(created, bool):
            return float(created)
    return 0.0
