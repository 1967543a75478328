"""HMAC-SHA256 under one key, for the MACs every store computes (its sigil, its audit
entry and head).

The same MAC as `hmac.new(key, message, hashlib.sha256)` (RFC 2104: SHA-256 of the
key's outer pad and of SHA-256 of its inner pad and the message), with both pads
absorbed once. `hmac.HMAC.copy`, `update` and `hexdigest` are Python methods around
the same C hash objects: four Python calls per MAC, which cost more than the hashing
itself at a store's size; here each MAC is C calls only.
"""

from __future__ import annotations

import hashlib

#: SHA-256's block size: the pads' length, and the longest key used as it is.
_BLOCK = 64
_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))


class KeyedMac:
    """HMAC-SHA256 with `key`'s pads already hashed."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:  # RFC 2104: a long key is hashed first
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\x00")
        self._inner = hashlib.sha256(key.translate(_INNER))
        self._outer = hashlib.sha256(key.translate(_OUTER))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()
