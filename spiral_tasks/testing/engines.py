"""Engines with settings changed by field name, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

from spiral_tasks.config import AuditSettings, OldSecret, Settings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.factory import open_coordinator
from spiral_tasks.observe import NO_OBSERVER, Observer
from spiral_tasks.storage.base import Storage

_GROUPS = ("limits", "gc", "locks")


def settings_with(base: Settings | None = None, **overrides: Any) -> Settings:
    """`base` (default: the defaults) with fields of its limits, GC policy or lock
    policy replaced by name, e.g. `settings_with(max_memory_nodes=5, ttl_s=0.5)`."""
    settings = base or Settings()
    left = dict(overrides)
    for group in _GROUPS:
        current = getattr(settings, group)
        mine = {f.name: left.pop(f.name) for f in fields(current) if f.name in left}
        if mine:
            settings = replace(settings, **{group: replace(current, **mine)})
    if left:
        raise TypeError(f"no such setting: {', '.join(sorted(left))}")
    return settings


def engine_over(storage: Storage, *, clock: Callable[[], float] | None = None,
                sigil_secret: str = "test-secret", old_sigil_secrets: Sequence[OldSecret] = (),
                sigil_refresh_s: float | None = None, observer: Observer = NO_OBSERVER,
                audit: AuditSettings | None = None, **overrides: Any) -> SpiralMemory:
    """An engine over `storage` with the coordinator its backend needs (sigil_secret
    "": the key generated and kept in storage; the audit log on, with a key kept in
    storage, unless `audit` says otherwise)."""
    settings = settings_with(**overrides)
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    if sigil_refresh_s is not None:
        extra["sigil_refresh_s"] = sigil_refresh_s
    return SpiralMemory(storage, open_coordinator(storage, settings.locks), settings.limits,
                        settings.gc, sigil_secret=sigil_secret,
                        old_sigil_secrets=old_sigil_secrets, observer=observer,
                        audit=audit, **extra)
