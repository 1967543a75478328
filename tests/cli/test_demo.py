"""spiral-demo, the README's main job: run as a user would, on the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spiral_tasks.testing.celery_worker import worker_env


def run_demo(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`spiral-demo` in `workdir` with nothing configured (the embedded default)."""
    return subprocess.run([sys.executable, "-m", "spiral_tasks.cli.demo", *args],
                          cwd=workdir, env=worker_env(None, **env), capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_demo_runs_tasks_through_a_worker_and_a_second_run_finds_its_data(
        tmp_path: Path) -> None:
    first = run_demo(tmp_path, "--count", "120", "--seed", "3")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "embedded deployment (no server)" in out
    assert "started one for this run" in out  # no worker was running: it started one
    assert "holds no memories yet" in out
    assert "1. Rebuild before the run" in out
    assert "120 stores in" in out
    assert "collected 12 by id" in out
    assert ": holds" in out  # the invariant
    assert "Spirals corrected:   0" in out
    assert (tmp_path / "spiraldb").is_dir()
    second = run_demo(tmp_path, "--count", "30", "--verbose")
    assert second.returncode == 0, second.stderr
    assert "found existing data: 128 memories" in second.stdout  # 120 + 20 timed - 12
    assert "counter" in second.stdout or "unchanged spiral" in second.stdout  # --verbose


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--count", "-5"], {}, "--count"),
    (["--count", "0"], {}, "--count"),
    (["--tenant", "no/slash"], {}, "--tenant"),
    ([], {"SPIRAL_VISIBILITY_TIMEOUT_S": "1h"}, "SPIRAL_VISIBILITY_TIMEOUT_S='1h'"),
    ([], {"REDIS_URL": "redis://host:6379/0/0"}, "REDIS_URL='redis://host:6379/0/0'"),
])
def test_bad_arguments_and_settings_are_refused_before_anything_happens(
        tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    result = run_demo(tmp_path, *args, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []  # no storage, no broker folder, nothing
