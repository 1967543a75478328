"""Long work inside one tenant's section: a backup reading a tenant whole, a key
rotation re-sealing one.

A Redis lock lives 2 s unextended, so such work keeps the lock alive as it reads
(`kept_alive`), commits its writes in chunks (`Section.commit_in_chunks`, the lock
extended before each), and is retried from the start of the tenant if the lock was
lost meanwhile (a stalled process: `in_section`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from spiral_tasks.errors import LockLost
from spiral_tasks.section import Section, Sections

T = TypeVar("T")

#: Items read between two extensions of the tenant's lock (a Redis lock lives 2 s).
EXTEND_EVERY = 2000
#: Attempts at a tenant whose lock was lost during the work.
ATTEMPTS = 3


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
