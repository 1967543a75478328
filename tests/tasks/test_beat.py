"""celery beat with redbeat: two schedulers running, one schedules."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from spiral_tasks.testing.celery_worker import CeleryProcess, worker_env
from spiral_tasks.testing.redis_server import RedisServer


def test_two_beats_schedule_each_job_once(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    env = worker_env(server.url, SPIRAL_GC_EVERY_S="1")
    schedulers = [CeleryProcess(["beat", "-l", "INFO", "--max-interval", "1"], env,
                                tmp_path / f"beat{n}", f"beat{n}").start()
                  for n in range(2)]
    try:
        time.sleep(8)
        client = redis.Redis.from_url(server.url)
        queued = client.llen("spiral.maintenance")
        client.close()
        senders = [s for s in schedulers if "Sending due task spiral-gc" in s.log()]
        assert len(senders) == 1, [s.log()[-2000:] for s in schedulers]
        assert 3 <= queued <= 10  # one GC a second from one scheduler, not two
    finally:
        for s in schedulers:
            s.stop()
        server.stop()
