"""`KeyedMac` is HMAC-SHA256: the same MAC as the standard library's for every key
length (shorter than a block, a block, longer: hashed first) and every message."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from spiral_tasks.security.mac import KeyedMac


@given(key=st.binary(max_size=200), messages=st.lists(st.binary(max_size=300), max_size=4))
def test_keyed_mac_is_hmac_sha256(key: bytes, messages: list[bytes]) -> None:
    keyed = KeyedMac(key)
    for message in messages:  # one keyed object serves many messages, each on its own
        assert keyed.hexdigest(message) == hmac.new(key, message, hashlib.sha256).hexdigest()


def test_keyed_mac_at_the_block_boundaries() -> None:
    for size in (0, 1, 63, 64, 65, 128):
        key = bytes(i % 251 for i in range(size))
        assert KeyedMac(key).hexdigest(b"m") == hmac.new(key, b"m", hashlib.sha256).hexdigest()
