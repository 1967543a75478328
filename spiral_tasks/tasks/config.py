"""Celery settings from the environment.

With `REDIS_URL` set, Redis is the broker, the result backend, the storage and the
lock service, and celery-redbeat keeps a single active beat scheduler. Without it,
the embedded default needs no server: kombu's filesystem transport as the broker,
Celery's file result backend, LevelDB storage, beat inside the worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.schedules import crontab
from kombu import Exchange, Queue

from spiral_tasks.config import Settings

DEFAULT_QUEUE = "spiral"
MAINTENANCE_QUEUE = "spiral.maintenance"
EXCHANGE = Exchange("spiral", type="direct")


@dataclass(frozen=True)
class CelerySettings:
    broker_url: str
    result_backend: str
    embedded_dir: Path | None
    visibility_timeout_s: int
    gc_every_s: float
    rebuild_cron: str
    result_expires_s: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CelerySettings:
        env = os.environ if env is None else env
        redis_url = env.get("REDIS_URL") or None
        embedded = None if redis_url else Path(env.get("SPIRAL_EMBEDDED_DIR")
                                               or "./spiral-embedded").resolve()
        broker = env.get("SPIRAL_BROKER_URL") or redis_url or "filesystem://"
        backend = (env.get("SPIRAL_RESULT_BACKEND") or redis_url
                   or f"file://{embedded}/results")
        return cls(
            broker_url=broker,
            result_backend=backend,
            embedded_dir=embedded,
            visibility_timeout_s=int(env.get("SPIRAL_VISIBILITY_TIMEOUT_S") or 3600),
            gc_every_s=float(env.get("SPIRAL_GC_EVERY_S") or 60),
            rebuild_cron=env.get("SPIRAL_REBUILD_CRON") or "0 2 * * *",
            result_expires_s=int(env.get("SPIRAL_RESULT_EXPIRES_S") or 3600),
        )


def parse_cron(expression: str) -> crontab:
    """A five-field cron line ("minute hour day-of-month month day-of-week")."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"SPIRAL_REBUILD_CRON={expression!r}: expected five fields, "
                         "e.g. '0 2 * * *'")
    minute, hour, day_of_month, month, day_of_week = fields
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                   month_of_year=month, day_of_week=day_of_week)


def embedded_folders(root: Path) -> dict[str, Path]:
    """The embedded deployment's folders: the broker's queue, processed and control
    messages, and the results."""
    return {name: root / name for name in ("queue", "processed", "control", "results")}


def celery_config(settings: Settings, celery: CelerySettings) -> dict[str, Any]:
    if settings.limits.tombstone_ttl_s < celery.visibility_timeout_s:
        raise ValueError(
            f"SPIRAL_TOMBSTONE_TTL_S ({settings.limits.tombstone_ttl_s:g}) must be at least "
            f"SPIRAL_VISIBILITY_TIMEOUT_S ({celery.visibility_timeout_s}): a redelivered "
            "store must still find the tombstone of a memory collected meanwhile")
    config: dict[str, Any] = {
        "broker_url": celery.broker_url,
        "result_backend": celery.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_expires": celery.result_expires_s,
        "result_extended": False,
        "task_queues": [Queue(name, EXCHANGE, routing_key=name)
                        for name in (DEFAULT_QUEUE, MAINTENANCE_QUEUE)],
        "task_default_queue": DEFAULT_QUEUE,
        "task_default_exchange": EXCHANGE.name,
        "task_default_routing_key": DEFAULT_QUEUE,
        "task_routes": {"spiral.gc": {"queue": MAINTENANCE_QUEUE},
                        "spiral.rebuild_stats": {"queue": MAINTENANCE_QUEUE}},
        # Late acks: a message leaves the queue only when its task finished, and a
        # worker child that dies returns it at once. One prefetched message at a
        # time, so a busy child does not sit on work another could do.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": 25,
        "task_time_limit": 30,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": celery.visibility_timeout_s},
        "result_backend_transport_options": {"retry_policy": {"max_retries": 5}},
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "beat_schedule": {
            "spiral-gc": {"task": "spiral.gc", "schedule": celery.gc_every_s},
            "spiral-nightly-rebuild": {"task": "spiral.rebuild_stats",
                                       "schedule": parse_cron(celery.rebuild_cron)},
        },
    }
    if celery.embedded_dir is not None:
        folders = embedded_folders(celery.embedded_dir)
        config["broker_transport_options"] = {
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
            "polling_interval": 0.05,
        }
        config["beat_schedule_filename"] = str(celery.embedded_dir / "celerybeat-schedule")
    else:
        config["beat_scheduler"] = "redbeat.RedBeatScheduler"
        config["redbeat_redis_url"] = settings.redis_url or celery.broker_url
        config["redbeat_lock_timeout"] = 60
    return config
