"""Every setting, read once per process from the environment into frozen dataclasses.

Defaults are the runbook's. Each group has one job: `Limits` bounds what a tenant may
hold, `GcPolicy` says when memories go, `LockPolicy` how critical sections wait and
expire, `TaskSettings` how Celery delivers, retries and times out, `BeatSettings`
what is scheduled. Relations between settings (a tombstone must outlive redelivery,
beat's lock must outlive its sleep) are checked here, so a deployment that cannot
work refuses to start with a message naming the variables, instead of failing later.
"""

from __future__ import annotations

import enum
import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from spiral_tasks.brokers.urls import SCHEME as SQLITE_SCHEME
from spiral_tasks.brokers.urls import sqlite_url
from spiral_tasks.config.environment import Environment


class StorageKind(enum.StrEnum):
    MEMORY = "memory"
    LEVEL = "level"
    REDIS = "redis"


@dataclass(frozen=True)
class Limits:
    """What one tenant may hold (the runbook's `memoryConfig` names)."""

    max_memory_spirals: int = 89
    spiral_turns: int = 21
    max_memory_nodes: int = 2618

    def __post_init__(self) -> None:
        for name in ("max_memory_spirals", "spiral_turns", "max_memory_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


#: The longest GIL switch interval a GC run may ask for (Python's default is 5 ms).
MAX_SWITCH_INTERVAL_MS = 5.0


@dataclass(frozen=True)
class GcPolicy:
    """When memories are collected, and how long a collected id stays collected."""

    time_budget_ms: float = 25.0
    trigger_interval: int = 100
    retention_s: float = 3600.0
    tombstone_ttl_s: float = 86400.0
    #: The GIL switch interval while a run lasts (0: the interpreter's own, 5 ms): a
    #: thread storing beside the run keeps the GIL at most this long when the run
    #: wants it back (`spiral_tasks/gc/slices.py`).
    switch_interval_ms: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.switch_interval_ms <= MAX_SWITCH_INTERVAL_MS:
            raise ValueError(f"switch_interval_ms must be from 0 to {MAX_SWITCH_INTERVAL_MS:g}"
                             f", got {self.switch_interval_ms}")
        if self.trigger_interval < 1:
            raise ValueError(f"trigger_interval must be at least 1, got {self.trigger_interval}")
        for name in ("time_budget_ms", "retention_s", "tombstone_ttl_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class LockPolicy:
    """A tenant's lock: how long a section waits for it, how long it lives unextended
    (the runbook's 2 s), whether locking is off (benchmarks only), and whether a store
    whose process's cache is current may commit without it, in one round trip, if
    nothing moved (Redis; SPIRAL_OPTIMISTIC_COMMITS=0 turns that off)."""

    wait_s: float = 2.0
    ttl_s: float = 2.0
    unsafe_unlocked: bool = False
    optimistic: bool = True


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient failures."""

    base_s: float = 0.05
    max_s: float = 5.0
    max_retries: int = 12


@dataclass(frozen=True)
class TaskSettings:
    """How Celery delivers, keeps results, times out and retries. (URLs may hold
    passwords: they stay out of `repr`, so a logged settings object shows none.)"""

    broker_url: str = field(default=f"{SQLITE_SCHEME}://spiral-embedded/broker.sqlite3",
                            repr=False)
    result_backend: str = field(default=f"{SQLITE_SCHEME}://spiral-embedded/results.sqlite3",
                                repr=False)
    embedded_dir: Path | None = None
    visibility_timeout_s: int = 3600
    result_expires_s: int = 3600
    store_time_limit_s: float = 30.0
    gc_time_limit_s: float = 120.0
    rebuild_time_limit_s: float = 1800.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    startup_rebuild_window_s: float = 60.0
    #: Whether workers send task events (received, started, succeeded, failed...) and
    #: producers `task-sent` from the start. Off: each event is a synchronous publish in
    #: the worker's main process; Flower and `celery control enable_events` switch the
    #: worker's on while they are wanted (README, "Task events").
    task_events: bool = False


@dataclass(frozen=True)
class BeatSettings:
    """What beat schedules, how long it may sleep, and how long its lock lives.

    Beat (celery-redbeat) extends its lock only when it wakes, and sleeps up to its
    next due task or its max interval, whichever is sooner; a standby polls for the
    lock every max interval. So the lock must outlive the longest sleep, and a standby
    takes over at most one lock timeout plus one max interval after the active beat
    stopped extending. None: celery-redbeat's own default, 5 x the max interval beat
    really runs with (which `--max-interval` may change; see `tasks/beat.py`).
    """

    gc_every_s: float = 60.0
    rebuild_cron: str = "0 2 * * *"
    max_interval_s: float = 10.0
    lock_timeout_s: float | None = None


#: A beat lock must last more than this many max intervals: one for the longest sleep,
#: one more for a late wake-up and the tick that extends it (a loaded machine, a slow
#: Redis round trip).
MIN_BEAT_LOCK_PER_MAX_INTERVAL = 2


def beat_lock_problem(lock_timeout_s: float, max_interval_s: float,
                      max_interval_source: str = "SPIRAL_BEAT_MAX_INTERVAL_S") -> str | None:
    """Why a beat lock of `lock_timeout_s` would expire while beat sleeps up to
    `max_interval_s` (named by `max_interval_source`), or None when it holds."""
    if lock_timeout_s > MIN_BEAT_LOCK_PER_MAX_INTERVAL * max_interval_s:
        return None
    return (f"must exceed twice {max_interval_source} ({max_interval_s:g} s): beat extends "
            "its lock only when it wakes, so a shorter lock expires while it sleeps (unset "
            "SPIRAL_BEAT_LOCK_TIMEOUT_S for 5 x the max interval)")


@dataclass(frozen=True)
class OldSecret:
    """A sigil secret that no longer signs (or does not sign yet) but whose sigils are
    accepted, until `until` (wall-clock seconds; None: until it is removed)."""

    secret: str
    until: float | None = None


@dataclass(frozen=True)
class SigilSettings:
    """The sigils' keys: the signing secret (None: generated and kept in storage), the
    old secrets still accepted, and how often a stored keyring is read again."""

    secret: str | None = None
    old_secrets: tuple[OldSecret, ...] = ()
    refresh_s: float = 5.0

    def __repr__(self) -> str:
        # Settings get printed and logged; the secrets never.
        return (f"SigilSettings(secret={'***' if self.secret else None}, "
                f"old_secrets={len(self.old_secrets)}, refresh_s={self.refresh_s:g})")


@dataclass(frozen=True)
class PerfSettings:
    """`spiral perf`'s workload (the runbook's `PERF_ITERATIONS`, `PERF_CONCURRENCY`):
    how many operations, from how many concurrent callers."""

    iterations: int = 1000
    concurrency: int = 8


@dataclass(frozen=True)
class MetricsSettings:
    """Where a worker node serves its Prometheus metrics (`METRICS_PORT`, 0: nowhere)
    and the folder its processes share samples through (`PROMETHEUS_MULTIPROC_DIR`,
    prometheus_client's own variable; unset, a folder per port under the system's
    temporary folder, so nodes on one host, each on its own port, never share one)."""

    port: int = 9099
    multiproc_dir: str | None = None


#: The highest TCP port.
MAX_PORT = 65535
#: Bounds of the perf workload: beyond them, a typo (or a job for benchmarks/).
MAX_PERF_ITERATIONS = 10_000_000
MAX_PERF_CONCURRENCY = 1000


#: An AES-256 key: 32 bytes.
ENCRYPTION_KEY_BYTES = 32


@dataclass(frozen=True)
class EncryptionSettings:
    """Encryption at rest: `key` seals memory records (and opens them); each of
    `decryption_keys` only opens them (the other key during a rotation; alone, the
    first step of turning encryption on). No key at all: the store is written in the
    clear, and refuses to open if it holds sealed values. The keys never appear in a
    repr, a log or an error."""

    key: bytes | None = field(default=None, repr=False)
    decryption_keys: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def enabled(self) -> bool:
        """Whether the process holds any key (to seal, or only to open)."""
        return self.key is not None or bool(self.decryption_keys)


@dataclass(frozen=True)
class AuditSettings:
    """The audit log (see `spiral_tasks.audit`): on unless turned off; its signing key
    (SPIRAL_AUDIT_KEY, else one generated and kept in storage); how long entries are
    kept (0: for ever; older ones give way to a signed checkpoint)."""

    enabled: bool = True
    key: str | None = field(default=None, repr=False)
    retention_s: float = 0.0

    def __post_init__(self) -> None:
        if not (self.retention_s >= 0 and math.isfinite(self.retention_s)):
            raise ValueError(f"retention_s must be 0 or more, got {self.retention_s}")


@dataclass(frozen=True)
class Settings:
    storage: StorageKind = StorageKind.LEVEL
    db_path: str = "./spiraldb"
    redis_url: str | None = field(default=None, repr=False)
    #: Its repr names no secret (see SigilSettings.__repr__).
    sigils: SigilSettings = field(default_factory=SigilSettings)
    limits: Limits = field(default_factory=Limits)
    gc: GcPolicy = field(default_factory=GcPolicy)
    locks: LockPolicy = field(default_factory=LockPolicy)
    tasks: TaskSettings = field(default_factory=TaskSettings)
    beat: BeatSettings = field(default_factory=BeatSettings)
    perf: PerfSettings = field(default_factory=PerfSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    encryption: EncryptionSettings = field(default_factory=EncryptionSettings)

    @property
    def sigil_secret(self) -> str | None:
        """The configured signing secret (`sigils.secret`), by its former name."""
        return self.sigils.secret

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; raise one `ConfigError` listing each bad one."""
        read = Environment(os.environ if env is None else env)
        redis_url = read.redis_url("REDIS_URL")
        limits, gc, locks, beat, perf = (DEFAULTS.limits, DEFAULTS.gc, DEFAULTS.locks,
                                         DEFAULTS.beat, DEFAULTS.perf)
        metrics = DEFAULTS.metrics
        settings = cls(
            storage=_storage_kind(read, redis_url),
            db_path=read.text("SPIRAL_DB_PATH", DEFAULTS.db_path),
            redis_url=redis_url,
            sigils=_sigil_settings(read),
            limits=Limits(
                max_memory_spirals=read.integer("SPIRAL_MAX_MEMORY_SPIRALS",
                                                limits.max_memory_spirals),
                spiral_turns=read.integer("SPIRAL_TURNS", limits.spiral_turns),
                max_memory_nodes=read.integer("SPIRAL_MAX_MEMORY_NODES",
                                              limits.max_memory_nodes),
            ),
            gc=GcPolicy(
                time_budget_ms=read.number("SPIRAL_GC_TIME_BUDGET_MS", gc.time_budget_ms,
                                           maximum=MAX_GC_BUDGET_MS, unit="milliseconds"),
                trigger_interval=read.integer("SPIRAL_GC_TRIGGER_INTERVAL", gc.trigger_interval),
                retention_s=read.number("SPIRAL_GC_RETENTION_S", gc.retention_s, unit="seconds"),
                tombstone_ttl_s=read.number("SPIRAL_TOMBSTONE_TTL_S", gc.tombstone_ttl_s,
                                            unit="seconds"),
                switch_interval_ms=read.number(
                    "SPIRAL_GC_SWITCH_INTERVAL_MS", gc.switch_interval_ms,
                    maximum=MAX_SWITCH_INTERVAL_MS, unit="milliseconds", zero_allowed=True),
            ),
            locks=LockPolicy(
                wait_s=read.number("SPIRAL_LOCK_TIMEOUT_S", locks.wait_s, unit="seconds"),
                ttl_s=read.number("SPIRAL_LOCK_TTL_S", locks.ttl_s, minimum=MIN_LOCK_TTL_S,
                                  unit="seconds"),
                unsafe_unlocked=read.flag("SPIRAL_UNSAFE_UNLOCKED"),
                optimistic=not read.flag_off("SPIRAL_OPTIMISTIC_COMMITS"),
            ),
            tasks=_task_settings(read, redis_url),
            beat=BeatSettings(
                gc_every_s=read.number("SPIRAL_GC_EVERY_S", beat.gc_every_s, unit="seconds"),
                rebuild_cron=read.fields("SPIRAL_REBUILD_CRON", beat.rebuild_cron, 5),
                max_interval_s=read.number("SPIRAL_BEAT_MAX_INTERVAL_S", beat.max_interval_s,
                                           unit="seconds"),
                lock_timeout_s=_optional_seconds(read, "SPIRAL_BEAT_LOCK_TIMEOUT_S"),
            ),
            perf=PerfSettings(
                iterations=read.integer("PERF_ITERATIONS", perf.iterations,
                                        maximum=MAX_PERF_ITERATIONS),
                concurrency=read.integer("PERF_CONCURRENCY", perf.concurrency,
                                         maximum=MAX_PERF_CONCURRENCY),
            ),
            metrics=MetricsSettings(
                port=read.integer("METRICS_PORT", metrics.port, minimum=0,
                                  maximum=MAX_PORT),
                multiproc_dir=read.optional_text("PROMETHEUS_MULTIPROC_DIR"),
            ),
            audit=AuditSettings(
                enabled=not read.flag_off("SPIRAL_AUDIT"),
                key=read.optional_text("SPIRAL_AUDIT_KEY"),
                retention_s=_optional_seconds(read, "SPIRAL_AUDIT_RETENTION_S") or 0.0,
            ),
            encryption=_encryption(read),
        )
        read.check()
        _check_relations(read, settings)
        read.check()
        return settings


#: Every default, from the dataclasses above: one place states them.
DEFAULTS = Settings()
#: Where the embedded deployment keeps its broker, results and beat schedule.
EMBEDDED_DIR = "./spiral-embedded"
#: The largest GC budget a run may be given: well inside the GC task's time limit.
MAX_GC_BUDGET_MS = 60_000.0
#: A lock must outlive many round trips: below this, every section would lose its lock
#: before committing (and Redis refuses an expiry of 0 ms).
MIN_LOCK_TTL_S = 0.1
#: Seconds between a task's soft time limit (an exception it can handle) and its hard
#: one (the child is killed).
SOFT_MARGIN_S = 5


def soft_time_limit(limit_s: float) -> int:
    """The soft time limit Celery gets for a hard limit of `limit_s` (whole seconds, a
    little before it, never below half of it)."""
    hard = hard_time_limit(limit_s)
    return max(hard // 2, hard - SOFT_MARGIN_S)


def hard_time_limit(limit_s: float) -> int:
    return max(2, math.ceil(limit_s))


def _storage_kind(read: Environment, redis_url: str | None) -> StorageKind:
    kind = read.choice("SPIRAL_STORAGE", StorageKind,
                       StorageKind.REDIS if redis_url else StorageKind.LEVEL)
    if kind is StorageKind.REDIS and not redis_url and read.raw("REDIS_URL") is None:
        read.problem("SPIRAL_STORAGE", kind.value, "redis storage needs REDIS_URL")
    return kind


def _task_settings(read: Environment, redis_url: str | None) -> TaskSettings:
    embedded: Path | None = None
    if redis_url:
        broker_default = backend_default = redis_url
    else:
        # Embedded: SQLite files of our own transport and result backend (see
        # spiral_tasks/brokers/ and the README for why not kombu's filesystem one).
        embedded = Path(read.text("SPIRAL_EMBEDDED_DIR", EMBEDDED_DIR)).resolve()
        broker_default = sqlite_url(embedded / "broker.sqlite3")
        backend_default = sqlite_url(embedded / "results.sqlite3")
    broker = read.url("SPIRAL_BROKER_URL", broker_default)
    backend = read.url("SPIRAL_RESULT_BACKEND", backend_default)
    defaults, retry = DEFAULTS.tasks, DEFAULTS.tasks.retry
    return TaskSettings(
        broker_url=broker,
        result_backend=backend,
        embedded_dir=embedded,
        visibility_timeout_s=read.integer("SPIRAL_VISIBILITY_TIMEOUT_S",
                                          defaults.visibility_timeout_s),
        result_expires_s=read.integer("SPIRAL_RESULT_EXPIRES_S", defaults.result_expires_s),
        store_time_limit_s=read.number("SPIRAL_TASK_TIME_LIMIT_S",
                                          defaults.store_time_limit_s, unit="seconds"),
        gc_time_limit_s=read.number("SPIRAL_GC_TIME_LIMIT_S", defaults.gc_time_limit_s,
                                       unit="seconds"),
        rebuild_time_limit_s=read.number("SPIRAL_REBUILD_TIME_LIMIT_S",
                                         defaults.rebuild_time_limit_s,
                                         unit="seconds"),
        retry=RetryPolicy(
            base_s=read.number("SPIRAL_RETRY_BACKOFF_BASE_S", retry.base_s,
                               unit="seconds"),
            max_s=read.number("SPIRAL_RETRY_BACKOFF_MAX_S", retry.max_s, unit="seconds"),
            max_retries=read.integer("SPIRAL_RETRY_MAX", retry.max_retries, minimum=0),
        ),
        startup_rebuild_window_s=read.number("SPIRAL_STARTUP_REBUILD_WINDOW_S",
                                             defaults.startup_rebuild_window_s,
                                             unit="seconds"),
        task_events=read.flag("SPIRAL_TASK_EVENTS"),
    )


def _encryption(read: Environment) -> EncryptionSettings:
    keys = read.keys("SPIRAL_ENCRYPTION_KEY", ENCRYPTION_KEY_BYTES, many=False)
    others = read.keys("SPIRAL_DECRYPTION_KEYS", ENCRYPTION_KEY_BYTES, many=True)
    return EncryptionSettings(keys[0] if keys else None, others)


def _sigil_settings(read: Environment) -> SigilSettings:
    secret = read.optional_text("SPIRAL_SIGIL_SECRET")
    old = _old_secrets(read, "SPIRAL_SIGIL_OLD_SECRETS")
    if old and not secret:
        read.problem("SPIRAL_SIGIL_OLD_SECRETS", None,
                     "is read only beside SPIRAL_SIGIL_SECRET (a generated secret kept in "
                     "storage is rotated with spiral rotate-sigil-secret)")
    if secret and any(o.secret == secret for o in old):
        read.problem("SPIRAL_SIGIL_OLD_SECRETS", None,
                     "holds the secret SPIRAL_SIGIL_SECRET already names")
    return SigilSettings(secret=secret, old_secrets=old,
                         refresh_s=read.number("SPIRAL_SIGIL_REFRESH_S",
                                               DEFAULTS.sigils.refresh_s, unit="seconds"))


def _old_secrets(read: Environment, name: str) -> tuple[OldSecret, ...]:
    """`SECRET[@UNTIL],...`: UNTIL an ISO 8601 time with its zone (2026-01-31T00:00:00Z).
    A problem names the entry by its position, never by its value: it is a secret."""
    found: list[OldSecret] = []
    entries = [e.strip() for e in (read.raw(name) or "").split(",")]
    for position, entry in enumerate(entries, start=1):
        if not entry:
            continue
        secret, until = entry, None
        if "@" in entry:
            secret, _, when = entry.rpartition("@")
            until = _utc_seconds(when)
            if until is None:
                read.problem(name, None, f"entry {position}: what follows @ must be an "
                             "ISO 8601 time with its zone, e.g. 2026-01-31T00:00:00Z")
                continue
        if not secret or any(c.isspace() for c in secret):
            read.problem(name, None, f"entry {position}: a secret must be non-empty and "
                         "hold no spaces")
        elif any(o.secret == secret for o in found):
            read.problem(name, None, f"entry {position}: the same secret as an earlier one")
        else:
            found.append(OldSecret(secret, until))
    return tuple(found)


def _utc_seconds(text: str) -> float | None:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return None if when.tzinfo is None else when.timestamp()


def _optional_seconds(read: Environment, name: str) -> float | None:
    return None if read.raw(name) is None else read.number(name, 1.0, unit="seconds")


def _check_relations(read: Environment, settings: Settings) -> None:
    tasks, beat, gc = settings.tasks, settings.beat, settings.gc
    if gc.tombstone_ttl_s < tasks.visibility_timeout_s:
        read.problem("SPIRAL_TOMBSTONE_TTL_S", f"{gc.tombstone_ttl_s:g}",
                     f"must be at least SPIRAL_VISIBILITY_TIMEOUT_S "
                     f"({tasks.visibility_timeout_s}): a redelivered store must still find "
                     "the tombstone of a memory collected meanwhile")
    gc_soft_s = soft_time_limit(tasks.gc_time_limit_s)
    if gc.time_budget_ms / 1000 >= gc_soft_s:
        read.problem("SPIRAL_GC_TIME_BUDGET_MS", f"{gc.time_budget_ms:g}",
                     f"must be below the GC task's soft time limit ({gc_soft_s} s, from "
                     f"SPIRAL_GC_TIME_LIMIT_S={tasks.gc_time_limit_s:g})")
    if tasks.retry.base_s > tasks.retry.max_s:
        read.problem("SPIRAL_RETRY_BACKOFF_BASE_S", f"{tasks.retry.base_s:g}",
                     f"must not exceed SPIRAL_RETRY_BACKOFF_MAX_S ({tasks.retry.max_s:g})")
    lock_problem = (None if beat.lock_timeout_s is None
                    else beat_lock_problem(beat.lock_timeout_s, beat.max_interval_s))
    if lock_problem:
        read.problem("SPIRAL_BEAT_LOCK_TIMEOUT_S", f"{beat.lock_timeout_s:g}", lock_problem)


@functools.cache
def current() -> Settings:
    """This process's settings, read from its environment once."""
    return Settings.from_env()
