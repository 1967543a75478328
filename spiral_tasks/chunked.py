"""Long work inside one tenant's section: a backup reading a tenant whole, a restore
writing one, a key rotation re-sealing one.

A Redis lock lives 2 s unextended, and one Redis script should stay small whatever
the memories' sizes, so such work keeps the lock alive as it reads, commits its
writes in chunks (each chunk atomic, the lock extended before each), and is retried
from the start of the tenant if the lock was lost meanwhile (a stalled process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import orjson

from spiral_tasks.errors import LockLost
from spiral_tasks.section import Section, Sections
from spiral_tasks.storage.base import Put, Write

T = TypeVar("T")

#: Items read between two extensions of the tenant's lock (a Redis lock lives 2 s).
EXTEND_EVERY = 2000
#: Attempts at a tenant whose lock was lost during the work.
ATTEMPTS = 3
#: A chunk is committed when it holds this many writes or this many bytes of values,
#: so one Redis script stays small whatever the memories' sizes.
CHUNK_WRITES = 1000
CHUNK_BYTES = 8 * 1024 * 1024


def kept_alive(section: Section, items: Iterable[T], every: int = EXTEND_EVERY
               ) -> Iterator[T]:
    """`items`, extending the section's lock every `every` of them."""
    for count, item in enumerate(items, start=1):
        if count % every == 0:
            section.fence.extend()
        yield item


def in_section(sections: Sections, tenant: str, work: Callable[[Section], T],
               timeout_s: float | None = None) -> T:
    """`work(section)` in the tenant's section, retried from the start (at most
    `ATTEMPTS` times) if the lock was lost meanwhile: what it did is kept only if the
    lock held throughout, or was committed chunk by chunk."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with sections.enter(tenant, timeout_s=timeout_s) as section:
                return work(section)
        except LockLost:
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def commit_chunks(section: Section, writes: Iterable[Write],
                  on_writes: Callable[[int], None] | None = None,
                  final: bool = False) -> None:
    """Commit `writes` in chunks (`CHUNK_WRITES`, `CHUNK_BYTES`), the lock extended
    before each; `on_writes(n)` after each chunk; `final`: the last releases the lock."""
    chunk: list[Write] = []
    size = 0
    for write in writes:
        chunk.append(write)
        size += len(orjson.dumps(write.value)) if isinstance(write, Put) else 64
        if len(chunk) >= CHUNK_WRITES or size >= CHUNK_BYTES:
            _commit(section, chunk, on_writes)
            chunk, size = [], 0
    _commit(section, chunk, on_writes, final=final)


def _commit(section: Section, chunk: list[Write], on_writes: Callable[[int], None] | None,
            final: bool = False) -> None:
    section.fence.extend()
    section.stage(*chunk)
    section.commit(final=final)
    if on_writes is not None and chunk:
        on_writes(len(chunk))
