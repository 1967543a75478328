"""The encryption keys a process holds: one that seals, any number that only open.

A key is named by its key id, an HMAC of a fixed text under the key (8 bytes, shown as
16 hex digits): it names the key in every sealed value and in every message without
revealing anything about it, and a wrong key can never pass for the right one (its id
differs). During a rotation a process holds the new key and the old one; which of the
two seals is the operator's choice, step by step (see ops/RUNBOOK.md).
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


class Keyring:
    """`sealing` seals new values; every key (it and `opening`) opens values."""

    def __init__(self, sealing: bytes, opening: Iterable[bytes] = ()) -> None:
        for key in (sealing, *opening):
            if len(key) != KEY_BYTES:
                raise ValueError(f"an encryption key is {KEY_BYTES} bytes, got {len(key)}")
        self.sealing_key = sealing
        self.sealing_id = key_id(sealing)
        self._keys = {key_id(k).hex(): k for k in (*opening, sealing)}

    @property
    def current(self) -> str:
        """The id of the key that seals, in hex."""
        return self.sealing_id.hex()

    @property
    def ids(self) -> list[str]:
        """Every key id this keyring opens, the sealing one first."""
        return [self.current, *sorted(set(self._keys) - {self.current})]

    def key(self, key_id_hex: str) -> bytes | None:
        return self._keys.get(key_id_hex)

    def __repr__(self) -> str:  # never the keys themselves
        return f"Keyring(sealing={self.current}, opens={self.ids})"
