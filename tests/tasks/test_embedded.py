"""The embedded default: no server at all, LevelDB storage, beat inside the worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import start_worker, wait_for_workers, worker_env


def test_embedded_worker_stores_and_rebuilds(tmp_path: Path) -> None:
    env = worker_env(None, SPIRAL_EMBEDDED_DIR=str(tmp_path / "spiral-embedded"),
                     SPIRAL_DB_PATH=str(tmp_path / "spiraldb"), SPIRAL_GC_EVERY_S="1")
    worker = start_worker(env, tmp_path, "embedded", "--beat", pool="threads",
                          concurrency=4)
    try:
        wait_for_workers(create_app(env), ["embedded"])
        result = subprocess.run(
            [sys.executable, "-m", "spiral_tasks.cli.enqueue", "--count", "20", "--rebuild",
             "--stats"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
            check=False)
        assert result.returncode == 0, result.stderr
        answers = [json.loads(line) for line in result.stdout.splitlines()]
        stores = [a["result"] for a in answers if a["task"] == "spiral.store_memory"]
        assert [s["created"] for s in stores] == [True] * 20
        stats = answers[-1]["result"]
        assert stats["consistent"] is True
        assert stats["total_memories"] == 20
        # The worker holds the LevelDB: a second process is told so, clearly.
        demo = subprocess.run([sys.executable, "-m", "spiral_tasks.cli.demo", "--count", "1"],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert demo.returncode == 1
        assert "one process at a time" in demo.stderr
        deadline = time.monotonic() + 20
        while "Sending due task spiral-gc" not in worker.log():
            assert time.monotonic() < deadline, "embedded beat sent no GC"
            time.sleep(0.2)
    finally:
        worker.stop()


def test_enqueue_without_a_worker_says_so(tmp_path: Path) -> None:
    env = worker_env(None, SPIRAL_EMBEDDED_DIR=str(tmp_path / "spiral-embedded"))
    result = subprocess.run(
        [sys.executable, "-m", "spiral_tasks.cli.enqueue", "--count", "1", "--timeout", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "is a worker running?" in result.stderr
