"""Running the installed console scripts as a user would: a real process, an
environment with only what the test sets (`worker_env`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from spiral_tasks.testing.celery_worker import worker_env

#: The virtual environment's scripts: `spiral`, `spiral-repair`, ...
SCRIPTS = Path(sys.executable).parent


def spiral(workdir: Path, *args: str, redis_url: str | None = None, program: str = "spiral",
           **env: str) -> subprocess.CompletedProcess[str]:
    """`program args` in `workdir`: LevelDB in workdir/spiraldb unless REDIS_URL."""
    return subprocess.run([str(SCRIPTS / program), *args], cwd=workdir,
                          env=worker_env(redis_url, **env), capture_output=True, text=True,
                          timeout=300, check=False)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error the program printed, asserting it is one line and no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def json_out(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    parsed: dict[str, object] = orjson.loads(result.stdout)
    return parsed
