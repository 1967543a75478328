"""Fresh memory ids: random version-4 UUIDs in hex, as `uuid.uuid4().hex` makes them.

Drawn from a pool filled by one `os.urandom` call per `POOL` ids instead of one per
store: that call releases the GIL, and with many threads storing at once every release
is a chance to hand the interpreter to another thread in the middle of a store. A
forked child empties its pool, so no two processes hand out the same ids.
"""

from __future__ import annotations

import os
from collections import deque

#: Ids drawn per refill.
POOL = 64

_pool: deque[str] = deque()


def _hex(raw: bytes) -> str:
    """`raw` (16 random bytes) as the hex of a version-4, RFC 4122 variant UUID."""
    b = bytearray(raw)
    b[6] = b[6] & 0x0F | 0x40
    b[8] = b[8] & 0x3F | 0x80
    return b.hex()


def new_id() -> str:
    try:
        return _pool.popleft()  # atomic: threads never get the same id
    except IndexError:
        raw = os.urandom(16 * POOL)
        _pool.extend(_hex(raw[i:i + 16]) for i in range(16, len(raw), 16))
        return _hex(raw[:16])


os.register_at_fork(after_in_child=_pool.clear)
