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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from celery import Celery

from spiral_tasks.testing.redis_server import free_port
from spiral_tasks.testing.waiting import wait_until


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


def process_state(pid: int) -> str:
    """The state letter /proc gives `pid` ("R" running, "S" sleeping, "T" stopped...),
    or "" once it is gone: a signal is delivered asynchronously, this says when it
    took effect."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


class CeleryProcess:
    """`celery -A spiral_tasks <args>` as a subprocess with its own environment."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, name: str) -> None:
        self.args = args
        self.name = name
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """What runs; a subclass may run a script of workers/ that execs celery."""
        return [sys.executable, "-m", "celery", "-A", "spiral_tasks", *self.args]

    def start(self) -> CeleryProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command(), cwd=self.workdir, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
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
    """A worker node; unless `env` names its METRICS_PORT, a free port of its own, as
    every node on one host needs (the README says so)."""
    if "METRICS_PORT" not in env:
        env = {**env, "METRICS_PORT": str(free_port())}
    return CeleryProcess(["worker", "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h",
                          "-l", "INFO", *extra], env, workdir, name).start()


def node_name(name: str) -> str:
    """The node name `start_worker(..., name)` gives its worker (`-n name@%h`)."""
    return f"{name}@{socket.gethostname()}"


def wait_for_workers(app: Celery, names: Sequence[str], timeout: float = 60) -> None:
    """Wait until every named worker node answers a ping (each ping returns as soon as
    all of them answered, so a ready fleet costs one round trip)."""
    wanted = [node_name(n) for n in names]

    def answered() -> bool:
        replies = app.control.ping(destination=wanted, timeout=1.0) or []
        return set(wanted) <= {node for reply in replies for node in reply}

    wait_until(answered, timeout, interval=0.1,
               message=f"workers {wanted} to answer a ping")


@contextmanager
def running_workers(app: Celery, env: dict[str, str], workdir: Path, names: Sequence[str],
                    *extra: str) -> Iterator[list[CeleryProcess]]:
    """Worker nodes started together (so they start as one fleet would), yielded once
    they all answer `app`'s ping, stopped on exit whatever happened."""
    nodes = [start_worker(env, workdir, name, *extra) for name in names]
    try:
        wait_for_workers(app, names)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
