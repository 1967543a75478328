"""The encryption keys a process holds: at most one that seals, any number that only
open.

A key is named by its key id, an HMAC of a fixed text under the key (8 bytes, shown as
16 hex digits): it names the key in every sealed value and in every message without
revealing anything about it, and a wrong key can never pass for the right one (its id
differs). During a rotation a process holds the new key and the old one; which of the
two seals is the operator's choice, step by step (see ops/RUNBOOK.md). A keyring with
no sealing key opens sealed records and writes in the clear: the first step of turning
encryption on without stopping every worker at once.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from spiral_tasks.security.envelope import KEY_ID_BYTES

KEY_BYTES = 32
_KEY_ID_TEXT = b"spiral-tasks encryption key id v1"


def key_id(key: bytes) -> bytes:
    """The 8-byte id of `key`."""
    return hmac.new(key, _KEY_ID_TEXT, hashlib.sha256).digest()[:KEY_ID_BYTES]


class EncryptionKeys:
    """`sealing` seals new values (None: values are written in the clear); every key
    (it and `opening`) opens values."""

    def __init__(self, sealing: bytes | None, opening: Iterable[bytes] = ()) -> None:
        keys = [*opening, *([sealing] if sealing is not None else [])]
        if not keys:
            raise ValueError("a keyring needs at least one key")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ValueError(f"an encryption key is {KEY_BYTES} bytes, got {len(key)}")
        self.sealing_key = sealing
        self.sealing_id = None if sealing is None else key_id(sealing)
        self._keys = {key_id(k).hex(): k for k in keys}

    @property
    def current(self) -> str | None:
        """The id of the key that seals, in hex (None: none seals)."""
        return None if self.sealing_id is None else self.sealing_id.hex()

    @property
    def ids(self) -> list[str]:
        """Every key id this keyring opens, the sealing one first."""
        current = self.current
        rest = sorted(set(self._keys) - {current} if current else set(self._keys))
        return [current, *rest] if current else rest

    def key(self, key_id_hex: str) -> bytes | None:
        return self._keys.get(key_id_hex)

    def __repr__(self) -> str:  # never the keys themselves
        return f"EncryptionKeys(sealing={self.current}, opens={self.ids})"
