"""`celery -A spiral_tasks` processes (workers, beat) for tests and benchmarks.

They run as real subprocesses with an environment of their own, so a caller can kill,
stop or restart them like an operator would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (a prefork worker's pool children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class CeleryProcess:
    """`celery -A spiral_tasks <args>` as a subprocess with its own environment."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, name: str) -> None:
        self.args = args
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "spiral_tasks", *self.args],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)
        for child in child_pids(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


def worker_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    """This process's environment without spiral and Celery settings, plus `extra`:
    REDIS_URL set selects the Redis deployment, unset the embedded one."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPIRAL_", "REDIS_URL", "CELERY_"))}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def start_worker(env: dict[str, str], workdir: Path, name: str, *extra: str,
                 concurrency: int = 2, pool: str = "prefork") -> CeleryProcess:
    return CeleryProcess(["worker", "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h",
                          "-l", "INFO", *extra], env, workdir, name).start()


def wait_for_workers(app: Celery, names: list[str], timeout: float = 60) -> None:
    """Wait until every named worker node answers a ping."""
    deadline = time.monotonic() + timeout
    wanted = {f"{n}@{socket.gethostname()}" for n in names}
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        if wanted <= {name for reply in replies for name in reply}:
            return
    raise RuntimeError(f"workers {sorted(wanted)} did not answer within {timeout} s")
