"""spiral stats --json is what the spiral.stats task returns, read without a worker."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from spiral_tasks.testing.celery_worker import CeleryProcess
from spiral_tasks.testing.redis_server import RedisServer
from tests.cli.programs import json_out, spiral


def test_stats_json_equals_the_tasks_answer(idle_workers: list[CeleryProcess],
                                            producer: Celery, worker_redis: RedisServer,
                                            tmp_path: Path) -> None:
    for i in range(12):
        producer.send_task("spiral.store_memory", kwargs={
            "content": f"m{i}", "tenant": "stats-cli", "depth": ["deep", "core"][i % 2],
        }).get(timeout=60)
    answer = producer.send_task("spiral.stats", kwargs={"tenant": "stats-cli"}).get(timeout=60)
    result = spiral(tmp_path, "stats", "--tenant", "stats-cli", "--json",
                    redis_url=worker_redis.url)
    assert result.returncode == 0, result.stderr
    assert json_out(result) == answer
    text = spiral(tmp_path, "stats", "--tenant", "stats-cli", redis_url=worker_redis.url)
    assert "tenant stats-cli: 12 memories in 2 spirals" in text.stdout
    assert ": holds" in text.stdout
