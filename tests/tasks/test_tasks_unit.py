"""Pieces of the Celery layer that need no worker: backoff, settings, the cron line."""

from __future__ import annotations

import pytest

from spiral_tasks.config import Settings
from spiral_tasks.tasks.config import CelerySettings, celery_config, parse_cron
from spiral_tasks.tasks.tasks import BACKOFF_MAX_S, backoff


def test_backoff_grows_and_is_capped() -> None:
    for retries in range(20):
        delays = [backoff(retries) for _ in range(200)]
        assert all(0 <= d <= min(BACKOFF_MAX_S, 0.05 * 2 ** retries) for d in delays)
    assert len({round(backoff(10), 6) for _ in range(50)}) > 1  # jittered


def test_cron_line() -> None:
    assert "0 2 * * *" in repr(parse_cron("0 2 * * *"))
    with pytest.raises(ValueError, match="five fields"):
        parse_cron("0 2 *")


def test_embedded_and_redis_settings() -> None:
    embedded = CelerySettings.from_env({"SPIRAL_EMBEDDED_DIR": "/tmp/e"})
    assert embedded.broker_url == "filesystem://"
    assert embedded.result_backend == "file:///tmp/e/results"
    on_redis = CelerySettings.from_env({"REDIS_URL": "redis://h:1/0"})
    assert on_redis.broker_url == on_redis.result_backend == "redis://h:1/0"
    config = celery_config(Settings.from_env({"REDIS_URL": "redis://h:1/0"}), on_redis)
    assert config["beat_scheduler"] == "redbeat.RedBeatScheduler"
    assert config["accept_content"] == ["json"]
    assert config["task_acks_late"] is True


def test_tombstones_must_outlive_redelivery() -> None:
    settings = Settings.from_env({"SPIRAL_TOMBSTONE_TTL_S": "60"})
    with pytest.raises(ValueError, match="SPIRAL_TOMBSTONE_TTL_S"):
        celery_config(settings, CelerySettings.from_env({}))
