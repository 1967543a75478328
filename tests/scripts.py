"""Scripts of workers/ run for real: Flower started exactly as workers/flower.sh
starts it (`spiral_tasks.testing.flower`, which benchmarks use too), and
workers/healthcheck.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spiral_tasks.testing import flower as _flower
from spiral_tasks.testing.flower import ROOT, SCRIPT, STARTUP_S, Answer, Flower, script_env

HEALTHCHECK = ROOT / "workers" / "healthcheck.py"
#: The tests' Flower's two users, and its FLOWER_BASIC_AUTH.
OPS, VIEWER = "ops:first-secret", "viewer:second-secret"
USERS = f"{OPS},{VIEWER}"
__all__ = ["HEALTHCHECK", "OPS", "ROOT", "SCRIPT", "STARTUP_S", "USERS", "VIEWER", "Answer",
           "Flower", "healthcheck", "running_flower", "script_env"]


def healthcheck(env: dict[str, str], cwd: Path, *args: str
                ) -> subprocess.CompletedProcess[str]:
    """`python workers/healthcheck.py ARGS`, as docker-compose runs it."""
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@contextmanager
def running_flower(env: dict[str, str], workdir: Path, users: str = USERS) -> Iterator[Flower]:
    """Flower as workers/flower.sh runs it, with the tests' users by default."""
    with _flower.running_flower(env, workdir, users) as flower:
        yield flower
