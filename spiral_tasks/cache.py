"""The per-process cache of each tenant's spirals and total.

Entering a section costs one round trip either way; with a current cache, that round
trip carries no spirals. A cached state is trusted only at the generation it was
read or written at (see `coordination.base`): the section asks for a snapshot
unless the tenant is still there, and falls back to the snapshot otherwise.

States are shared between threads, so they are never changed in place: a section
works on a copy and puts a new state back after each successful commit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spiral_tasks import records
from spiral_tasks.keys import TenantKeys
from spiral_tasks.model import Spiral
from spiral_tasks.placement import OpenSpirals

#: `TenantState.audit_head` when the state does not know the audit log's head.
UNKNOWN: Any = object()


@dataclass
class TenantState:
    """A tenant's spirals and memory total, as of `generation`."""

    spirals: dict[str, Spiral] = field(default_factory=dict)
    memory_count: int = 0
    generation: str = ""
    #: The spirals' keys, kept as spirals are added (asked for on every entry).
    _spiral_keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False)
    #: The audit log's head at `generation` (UNKNOWN: not read with it), so a store
    #: that commits optimistically can chain its entries without reading it.
    audit_head: Any = field(default=UNKNOWN, repr=False, compare=False)
    #: The open spirals, kept as spirals are put (built when placement first asks).
    _open: OpenSpirals | None = field(default=None, repr=False, compare=False)
    #: Whether `spirals` and `_open` are shared with a copy: a section copies the state
    #: on entering and again for the cache after each commit, so they are copied only
    #: when one side changes them (`put`), at most once per commit.
    _shared: bool = field(default=False, repr=False, compare=False)
    #: Per spiral key, the stored bytes a snapshot held and the spiral they decoded to
    #: (a pure mapping, so it stays true however the state changes): a later snapshot
    #: reuses the spiral for the same bytes rather than decoding and checking it again.
    _decoded: dict[str, tuple[bytes, Spiral]] = field(default_factory=dict, repr=False,
                                                      compare=False)

    def copy(self) -> TenantState:
        self._shared = True
        # Every field set here, in `__init__`'s order (so the copy's attributes share
        # their keys as its would), without its call: a section copies twice per store.
        copied = object.__new__(TenantState)
        copied.spirals = self.spirals
        copied.memory_count = self.memory_count
        copied.generation = self.generation
        copied._spiral_keys = self._spiral_keys
        copied.audit_head = self.audit_head
        copied._open = self._open
        copied._shared = True
        copied._decoded = self._decoded
        return copied

    def put(self, spiral: Spiral) -> None:
        if self._shared:
            self.spirals = dict(self.spirals)
            self._open = None if self._open is None else self._open.copy()
            self._shared = False
        previous = self.spirals.get(spiral.id)
        if previous is None:
            self._spiral_keys = None
        self.spirals[spiral.id] = spiral
        if self._open is not None:
            self._open.put(spiral, previous)

    def open_spirals(self) -> OpenSpirals:
        """The spirals with room, indexed for placement."""
        if self._open is None:
            self._open = OpenSpirals(self.spirals.values())
        return self._open

    @classmethod
    def from_snapshot(cls, keys: TenantKeys, snapshot: Mapping[str, Any], generation: str,
                      stored: Mapping[str, bytes | None] | None = None,
                      previous: TenantState | None = None) -> TenantState:
        """The state a snapshot shows; `CorruptRecord` if a spiral record or the total
        in it is corrupt (an operation cannot place or count on a guess).

        `stored`: the snapshot's values as stored (bytes), when the coordinator has
        them; a spiral whose bytes are those `previous` was built from is taken from
        it as it is. A process whose cache went stale because another wrote the tenant
        (two prefork children on one tenant: nearly every store) then decodes only
        the spirals that other writer changed, not all of them."""
        prefix = keys.spirals
        known = previous._decoded if previous is not None else {}
        decoded: dict[str, tuple[bytes, Spiral]] = {}
        spirals: dict[str, Spiral] = {}
        for key in snapshot:
            if not key.startswith(prefix):
                continue
            raw = stored.get(key) if stored is not None else None
            hit = known.get(key) if raw is not None else None
            if hit is not None and hit[0] == raw:
                spiral = hit[1]  # its value is not even decoded (a lazy `snapshot`)
            else:
                value = snapshot[key]
                if value is None:
                    continue
                spiral = records.spiral(key, value)
            spirals[spiral.id] = spiral
            if raw is not None:
                decoded[key] = (raw, spiral)
        total = snapshot.get(keys.memory_count)
        state = cls(spirals, 0 if total is None else records.counter(keys.memory_count, total),
                    generation)
        state._decoded = decoded
        return state

    def spiral_keys(self, keys: TenantKeys) -> tuple[str, ...]:
        if self._spiral_keys is None:
            self._spiral_keys = tuple(keys.spiral(spiral_id) for spiral_id in self.spirals)
        return self._spiral_keys


class TenantCache:
    def __init__(self) -> None:
        self._states: dict[str, TenantState] = {}
        self._registered: set[str] = set()
        self._guard = threading.Lock()

    def get(self, tenant: str) -> TenantState | None:
        """The cached state (read-only: copy it before changing it)."""
        return self._states.get(tenant)

    def put(self, tenant: str, state: TenantState) -> None:
        with self._guard:
            self._states[tenant] = state

    def registered(self, tenant: str) -> bool:
        """Whether this process already wrote the tenant's marker."""
        return tenant in self._registered

    def mark_registered(self, tenants: Iterable[str]) -> None:
        with self._guard:
            self._registered.update(tenants)

    def forget_registered(self, tenant: str) -> None:
        """The tenant's marker is missing from storage: write it again."""
        with self._guard:
            self._registered.discard(tenant)
