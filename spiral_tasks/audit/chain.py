"""An audit entry's hash and signature; the signed head and checkpoint.

Each entry carries the hash of the one before (`prev`), so removing, reordering or
inserting entries breaks the chain, and its own hash over every other field, so
altering one shows. Each entry's hash is also signed (HMAC-SHA256 under the audit
key): without the key nobody can write an entry that verifies, so even a writer with
raw access to storage cannot insert a forged entry or rewrite the chain after a change,
only remove (which the sequence numbers and the signed head reveal).

The head (seq, hash of the last entry) is signed too, so cutting entries off the end
shows; the checkpoint a retention trim leaves (seq, hash of the last entry removed)
is signed, so the chain can start from it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from spiral_tasks.keys import AUDIT_KEY
from spiral_tasks.security.keyring import kept_secret
from spiral_tasks.security.mac import KeyedMac
from spiral_tasks.storage.base import Storage

#: What the first entry's `prev` holds.
GENESIS = "0" * 64
#: The fields every entry has, besides `hash` and `mac`.
FIELDS = ("seq", "prev", "tenant", "op", "ids", "task", "worker", "time")
_FIELD_SET = frozenset(FIELDS)


def entry_hash(body: dict[str, Any]) -> str:
    """SHA-256 of the entry's fields (all but `hash` and `mac`), canonical JSON."""
    # An entry being made holds exactly these fields: hashed as it is (the JSON sorts
    # its keys either way); a stored one holds `hash` and `mac` besides.
    return _digest(body if body.keys() == _FIELD_SET else {k: body.get(k) for k in FIELDS})


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Signer:
    """HMAC-SHA256 under the audit key: entries, the head and checkpoints."""

    def __init__(self, key: bytes) -> None:
        # The key already absorbed: each signature starts from it (every commit signs
        # twice) rather than hashing the key again.
        self._keyed = KeyedMac(key)

    @classmethod
    def load(cls, storage: Storage, configured: str | None) -> Signer:
        """The configured key (SPIRAL_AUDIT_KEY), else one kept in storage, created
        once by whichever process comes first (atomic set-if-absent)."""
        if configured:
            return cls(configured.encode())
        return cls(kept_secret(storage, AUDIT_KEY, storage.get(AUDIT_KEY)).encode())

    def sign(self, *parts: object) -> str:
        return self._keyed.hexdigest("\x00".join(map(str, parts)).encode())

    def valid(self, mac: object, *parts: object) -> bool:
        return isinstance(mac, str) and hmac.compare_digest(mac, self.sign(*parts))

    # --- entries, head, checkpoint -----------------------------------------------------
    def entry(self, body: dict[str, Any]) -> dict[str, Any]:
        """`body` with its hash and the hash's signature."""
        digest = entry_hash(body)
        return {**body, "hash": digest, "mac": self._entry_mac(digest)}

    def seal(self, body: dict[str, Any]) -> dict[str, Any]:
        """`entry(body)` for a body made for it, holding exactly `FIELDS` in any order:
        its hash and signature added in place, with neither the check of its fields
        nor the copy (every store's entry)."""
        digest = body["hash"] = _digest(body)
        body["mac"] = self._entry_mac(digest)
        return body

    def _entry_mac(self, digest: str) -> str:
        # `sign("entry", digest)` for the str a digest is, without its `map` and join.
        return self._keyed.hexdigest(f"entry\x00{digest}".encode())

    def head(self, tenant: str, seq: int, digest: str) -> dict[str, Any]:
        # Every commit signs one: the message as `sign` joins it, in one f-string where
        # that is the same text (a str formats as itself, an int as `str` gives it;
        # a subclass could differ, so it goes the general way). About 4k instructions
        # of a store's 550k (`benchmarks.store_instructions`).
        if type(tenant) is str and type(seq) is int and type(digest) is str:
            mac = self._keyed.hexdigest(f"head\x00{tenant}\x00{seq}\x00{digest}".encode())
        else:
            mac = self.sign("head", tenant, seq, digest)
        return {"seq": seq, "hash": digest, "mac": mac}

    def checkpoint(self, tenant: str, seq: int, digest: str, time: float) -> dict[str, Any]:
        return {"seq": seq, "hash": digest, "time": time,
                "mac": self.sign("checkpoint", tenant, seq, digest, time)}

    def head_valid(self, tenant: str, head: dict[str, Any]) -> bool:
        return self.valid(head.get("mac"), "head", tenant, head.get("seq"), head.get("hash"))

    def checkpoint_valid(self, tenant: str, point: dict[str, Any]) -> bool:
        return self.valid(point.get("mac"), "checkpoint", tenant, point.get("seq"),
                          point.get("hash"), point.get("time"))
