"""The README's main job, run as a real process against a real LevelDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from spiral_tasks.storage.level import LevelStorage


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SPIRAL_STORAGE")}
    env["SPIRAL_DB_PATH"] = str(tmp_path / "spiraldb")
    return subprocess.run([sys.executable, "-m", "spiral_tasks.cli.demo", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_demo_stores_and_reports_a_consistent_store(tmp_path: Path) -> None:
    first = run_demo(tmp_path, "--count", "120", "--seed", "3")
    assert first.returncode == 0, first.stderr
    assert "consistent=True" in first.stdout
    assert "Spirals corrected:   0" in first.stdout
    second = run_demo(tmp_path, "--count", "30")  # the database persists across runs
    assert second.returncode == 0, second.stderr
    assert "Total nodes scanned: 108" in second.stdout  # 120 stored, 12 collected


def test_demo_explains_a_locked_database(tmp_path: Path) -> None:
    with LevelStorage(tmp_path / "spiraldb"):
        result = run_demo(tmp_path, "--count", "1")
    assert result.returncode == 1
    assert "one process at a time" in result.stderr
