"""Pieces of the Celery layer that need no worker: backoff, settings, the cron line."""

from __future__ import annotations

import inspect

import pytest

from spiral_tasks.config import RetryPolicy, Settings
from spiral_tasks.errors import ConfigError, InvalidArgument
from spiral_tasks.tasks.base import backoff, check_arguments
from spiral_tasks.tasks.config import celery_config, parse_cron


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy()
    for retries in range(20):
        delays = [backoff(retries, policy) for _ in range(200)]
        assert all(0 <= d <= min(policy.max_s, policy.base_s * 2 ** retries) for d in delays)
    assert len({round(backoff(10), 6) for _ in range(50)}) > 1  # jittered


def test_cron_line() -> None:
    assert "0 2 * * *" in repr(parse_cron("0 2 * * *"))
    with pytest.raises(ConfigError, match="five fields"):
        parse_cron("0 2 *")
    with pytest.raises(ConfigError, match="SPIRAL_REBUILD_CRON='99 2 \\* \\* \\*'"):
        parse_cron("99 2 * * *")


def test_embedded_and_redis_settings() -> None:
    embedded = Settings.from_env({"SPIRAL_EMBEDDED_DIR": "/tmp/e"}).tasks
    assert embedded.broker_url == "spiral-sqlite:///tmp/e/broker.sqlite3"
    assert embedded.result_backend == "spiral-sqlite:///tmp/e/results.sqlite3"
    on_redis = Settings.from_env({"REDIS_URL": "redis://h:1/0"})
    assert on_redis.tasks.broker_url == on_redis.tasks.result_backend == "redis://h:1/0"
    config = celery_config(on_redis)
    assert config["beat_scheduler"] == "spiral_tasks.tasks.beat:SpiralBeatScheduler"
    assert config["accept_content"] == ["json"]
    assert config["task_acks_late"] is True


@pytest.mark.parametrize(("value", "on"), [(None, False), ("0", False), ("1", True)])
def test_task_events_are_off_unless_asked_for(value: str | None, on: bool) -> None:
    """Off by default (each costs the worker's main process a publish); SPIRAL_TASK_EVENTS=1
    turns on the workers' and the producers' task-sent alike. Heartbeats are not
    configured here: Celery always sends them."""
    env = {"REDIS_URL": "redis://h:1/0"} | ({} if value is None else
                                           {"SPIRAL_TASK_EVENTS": value})
    config = celery_config(Settings.from_env(env))
    assert config["worker_send_task_events"] is on
    assert config["task_send_sent_event"] is on


def test_a_bad_task_events_flag_is_refused() -> None:
    with pytest.raises(ConfigError, match="SPIRAL_TASK_EVENTS='maybe'"):
        Settings.from_env({"SPIRAL_TASK_EVENTS": "maybe"})


def test_a_call_that_does_not_fit_names_the_argument_briefly() -> None:
    def task(content: str, tenant: str = "default") -> None: ...

    signature = inspect.signature(task)
    cases: list[tuple[tuple[object, ...], dict[str, object], str]] = [
        ((), {"conten": "x"}, "conten"),
        ((), {}, "content"),
        (("a", "b", "c"), {}, "args"),
        (("a",), {"content": "b"}, "content"),
    ]
    for args, kwargs, argument in cases:
        with pytest.raises(InvalidArgument) as caught:
            check_arguments("spiral.t", signature, args, kwargs)
        assert caught.value.argument == argument
    with pytest.raises(InvalidArgument) as caught:
        check_arguments("spiral.t", signature, (), {"k" * 100_000: 1})
    assert len(str(caught.value)) < 300
