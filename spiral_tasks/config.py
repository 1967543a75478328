"""Limits and settings, read once from the environment into frozen dataclasses.

Defaults are the runbook's. Every limit applies per tenant. A malformed variable fails
loudly at startup instead of silently falling back to a default.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T", int, float)


class StorageKind(enum.StrEnum):
    MEMORY = "memory"
    LEVEL = "level"
    REDIS = "redis"


@dataclass(frozen=True)
class Limits:
    """The runbook's tuning parameters (names mirror `memoryConfig`)."""

    max_memory_spirals: int = 89
    spiral_turns: int = 21
    max_memory_nodes: int = 2618
    gc_time_budget_ms: float = 25.0
    gc_trigger_interval: int = 100
    gc_retention_s: float = 3600.0
    lock_timeout_s: float = 2.0
    tombstone_ttl_s: float = 86400.0

    def __post_init__(self) -> None:
        for name in ("max_memory_spirals", "spiral_turns", "max_memory_nodes",
                     "gc_trigger_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("gc_time_budget_ms", "gc_retention_s", "lock_timeout_s",
                     "tombstone_ttl_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


#: Environment variable for each limit.
LIMIT_VARIABLES: dict[str, str] = {
    "max_memory_spirals": "SPIRAL_MAX_MEMORY_SPIRALS",
    "spiral_turns": "SPIRAL_TURNS",
    "max_memory_nodes": "SPIRAL_MAX_MEMORY_NODES",
    "gc_time_budget_ms": "SPIRAL_GC_TIME_BUDGET_MS",
    "gc_trigger_interval": "SPIRAL_GC_TRIGGER_INTERVAL",
    "gc_retention_s": "SPIRAL_GC_RETENTION_S",
    "lock_timeout_s": "SPIRAL_LOCK_TIMEOUT_S",
    "tombstone_ttl_s": "SPIRAL_TOMBSTONE_TTL_S",
}


def _parse(env: Mapping[str, str], name: str, kind: Callable[[str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a valid "
                         f"{kind.__name__}") from None


@dataclass(frozen=True)
class Settings:
    """Where storage lives and how the engine behaves, from the environment."""

    limits: Limits = field(default_factory=Limits)
    storage: StorageKind = StorageKind.LEVEL
    db_path: str = "./spiraldb"
    redis_url: str | None = None
    sigil_secret: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = Limits()
        limits = Limits(**{
            attr: _parse(env, var, type(getattr(defaults, attr)), getattr(defaults, attr))
            for attr, var in LIMIT_VARIABLES.items()
        })
        redis_url = env.get("REDIS_URL") or None
        default_kind = StorageKind.REDIS if redis_url else StorageKind.LEVEL
        raw_kind = env.get("SPIRAL_STORAGE") or default_kind.value
        try:
            kind = StorageKind(raw_kind)
        except ValueError:
            choices = ", ".join(k.value for k in StorageKind)
            raise ValueError(f"SPIRAL_STORAGE={raw_kind!r}: choose one of {choices}") from None
        if kind is StorageKind.REDIS and not redis_url:
            raise ValueError("SPIRAL_STORAGE=redis needs REDIS_URL")
        return cls(
            limits=limits,
            storage=kind,
            db_path=env.get("SPIRAL_DB_PATH") or "./spiraldb",
            redis_url=redis_url,
            sigil_secret=env.get("SPIRAL_SIGIL_SECRET") or None,
        )
