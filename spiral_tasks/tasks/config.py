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
from spiral_tasks.config.redis_urls import is_redis_url, parse_redis_url
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
        # Task events only when asked for (SPIRAL_TASK_EVENTS, `celery control
        # enable_events`, Flower): each costs the worker's main process a publish.
        "worker_send_task_events": tasks.task_events,
        "task_send_sent_event": tasks.task_events,
        # Celery's name for beat's max interval; the beat lock's timeout follows it.
        "beat_max_loop_interval": beat.max_interval_s,
        "beat_schedule": {
            "spiral-gc": {"task": "spiral.gc", "schedule": beat.gc_every_s},
            "spiral-nightly-rebuild": {"task": "spiral.rebuild_stats",
                                       "schedule": parse_cron(beat.rebuild_cron)},
        },
    }
    config.update(_redis_connections(tasks.broker_url, tasks.result_backend))
    if tasks.embedded_dir is not None:
        # The broker and the results are SQLite files in the embedded folder (the
        # defaults of SPIRAL_BROKER_URL and SPIRAL_RESULT_BACKEND); the transport
        # takes the same visibility timeout as Redis (broker_transport_options).
        config["beat_schedule_filename"] = str(tasks.embedded_dir / "celerybeat-schedule")
    else:
        config["beat_scheduler"] = "spiral_tasks.tasks.beat:SpiralBeatScheduler"
        config.update(_redbeat_connection(settings.redis_url or tasks.broker_url))
        if beat.lock_timeout_s is not None:
            config["redbeat_lock_timeout"] = beat.lock_timeout_s
    return config


def _redis_connections(broker_url: str, result_backend: str) -> dict[str, Any]:
    """The broker and the results, each `rediss://` one with its TLS options given
    explicitly (kombu alone would connect to a bare `rediss://` without checking the
    server's certificate; see `spiral_tasks.config.redis_urls`). The broker's URL
    also keeps them written out, since kombu makes connections from the URL alone in
    places; Celery's result backend takes them from `redis_backend_use_ssl` only."""
    config: dict[str, Any] = {"broker_url": broker_url, "result_backend": result_backend}
    if is_redis_url(broker_url):
        broker = parse_redis_url(broker_url)
        config["broker_url"] = broker.url_with_tls()
        if broker.tls is not None:
            config["broker_use_ssl"] = broker.tls.options()
    if is_redis_url(result_backend):
        backend = parse_redis_url(result_backend)
        config["result_backend"] = backend.url
        if backend.tls is not None:
            config["redis_backend_use_ssl"] = backend.tls.options()
    return config


def _redbeat_connection(url: str) -> dict[str, Any]:
    """celery-redbeat's client: its URL without credentials, which go in its options,
    because Celery's `inspect conf` (and Flower's worker page) shows every setting,
    hiding only those whose names say secret (`password` is one, `redbeat_redis_url`
    is not). The options are explicit anyway, so celery-redbeat does not fall back to
    (and warn about) the broker's transport options, which are not for its client."""
    address = parse_redis_url(url)
    bare_url, credentials = address.without_credentials()
    config: dict[str, Any] = {"redbeat_redis_url": bare_url,
                              "redbeat_redis_options": credentials}
    if address.tls is not None:
        config["redbeat_redis_use_ssl"] = address.tls.options()
    return config
