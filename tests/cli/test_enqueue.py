"""spiral-enqueue's errors: each in one line, before or instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spiral_tasks.testing.celery_worker import worker_env
from spiral_tasks.testing.redis_server import RedisServer, free_port


def enqueue(workdir: Path, *args: str, redis_url: str | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spiral_tasks.cli.enqueue", *args],
                          cwd=workdir, env=worker_env(redis_url, **env),
                          capture_output=True, text=True, timeout=120, check=False)


def test_an_unreachable_broker_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = enqueue(tmp_path, "--count", "3", redis_url=url)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()]  # exactly one line
    assert f"cannot reach the broker at {url}" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_worker_it_says_the_stores_stay_queued(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    try:
        result = enqueue(tmp_path, "--count", "2", "--timeout", "1", redis_url=server.url)
        assert result.returncode == 3
        assert "no worker answered" in result.stderr
        assert "stay queued for the next worker" in result.stderr
        assert "no answer to spiral.store_memory within 1 s" in result.stderr
        # Those two lines and nothing after them (no traceback from the result
        # backend at exit).
        assert len(result.stderr.strip().splitlines()) == 2, result.stderr
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(server.url)
        assert client.llen("spiral") == 2  # still queued, for the next worker
        client.close()
    finally:
        server.stop()


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--count", "-5"], {}, "--count"),
    (["--timeout", "-1"], {}, "--timeout"),
    (["--timeout", "nan"], {}, "--timeout"),
    (["--timeout", "inf"], {}, "--timeout"),
    (["--count", "100000000"], {}, "--count"),
    (["--tenant", "a b"], {}, "--tenant"),
    (["--depth", "abyss"], {}, "--depth"),
    ([], {"SPIRAL_GC_TIME_BUDGET_MS": "inf"}, "SPIRAL_GC_TIME_BUDGET_MS='inf'"),
])
def test_bad_arguments_are_refused_before_anything_is_sent(
        tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    result = enqueue(tmp_path, *args, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []
