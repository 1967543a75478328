"""The Celery configuration, built from the process's settings.

With `REDIS_URL` set, Redis is the broker, the result backend, the storage and the
lock service, and celery-redbeat keeps a single active beat scheduler. Without it,
the embedded default needs no server: a broker and results in SQLite files of the
embedded folder (`spiral_tasks.brokers`), LevelDB storage, beat inside the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery.schedules import crontab
from kombu import Exchange, Queue

from spiral_tasks.brokers import registry
from spiral_tasks.config import Settings
from spiral_tasks.config.settings import hard_time_limit, soft_time_limit
from spiral_tasks.errors import ConfigError

DEFAULT_QUEUE = "spiral"
MAINTENANCE_QUEUE = "spiral.maintenance"
EXCHANGE = Exchange("spiral", type="direct")


def parse_cron(expression: str, variable: str = "SPIRAL_REBUILD_CRON") -> crontab:
    """A five-field cron line ("minute hour day-of-month month day-of-week")."""
    fields = expression.split()
    if len(fields) != 5:
        raise ConfigError([f"{variable}={expression!r}: expected five fields, e.g. "
                           "'0 2 * * *'"])
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month, day_of_week=day_of_week)
    except ValueError as exc:
        raise ConfigError([f"{variable}={expression!r}: {exc}"]) from None


@dataclass(frozen=True)
class TimeLimits:
    """A task's hard time limit (its child is killed) and a soft one a little before
    it (an exception the task can handle), in whole seconds as Celery takes them."""

    soft: int
    hard: int

    @classmethod
    def of(cls, limit_s: float) -> TimeLimits:
        return cls(soft=soft_time_limit(limit_s), hard=hard_time_limit(limit_s))


def celery_config(settings: Settings) -> dict[str, Any]:
    # spiral-sqlite:// (the embedded broker and results) is known in any deployment.
    registry.register()
    tasks, beat = settings.tasks, settings.beat
    store_limits = TimeLimits.of(tasks.store_time_limit_s)
    config: dict[str, Any] = {
        "broker_url": tasks.broker_url,
        "result_backend": tasks.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_expires": tasks.result_expires_s,
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
        "task_soft_time_limit": store_limits.soft,
        "task_time_limit": store_limits.hard,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": tasks.visibility_timeout_s},
        "result_backend_transport_options": {"retry_policy": {"max_retries": 5}},
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Celery's name for beat's max interval; the beat lock's timeout follows it.
        "beat_max_loop_interval": beat.max_interval_s,
        "beat_schedule": {
            "spiral-gc": {"task": "spiral.gc", "schedule": beat.gc_every_s},
            "spiral-nightly-rebuild": {"task": "spiral.rebuild_stats",
                                       "schedule": parse_cron(beat.rebuild_cron)},
        },
    }
    if tasks.embedded_dir is not None:
        # The broker and the results are SQLite files in the embedded folder (the
        # defaults of SPIRAL_BROKER_URL and SPIRAL_RESULT_BACKEND); the transport
        # takes the same visibility timeout as Redis (broker_transport_options).
        config["beat_schedule_filename"] = str(tasks.embedded_dir / "celerybeat-schedule")
    else:
        config["beat_scheduler"] = "spiral_tasks.tasks.beat:SpiralBeatScheduler"
        config["redbeat_redis_url"] = settings.redis_url or tasks.broker_url
        # Explicit, so celery-redbeat does not fall back to (and warn about) the
        # broker's transport options, which are not for its client.
        config["redbeat_redis_options"] = {}
        if beat.lock_timeout_s is not None:
            config["redbeat_lock_timeout"] = beat.lock_timeout_s
    return config
