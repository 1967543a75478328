"""A worker for a command-line run: the one already serving the broker, or one started
for the run (exactly as `workers/embedded.sh` or `workers/worker.sh` would start it)
and stopped after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from spiral_tasks.cli.connect import describe, local_worker_name, workers
from spiral_tasks.config import Settings

#: How long a started worker may take to answer its first ping.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


@dataclass
class WorkerHandle:
    description: str
    log_hint: str
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Stop the worker if this run started it (a warm shutdown: tasks finish)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextmanager
def _interrupts_deferred() -> Iterator[list[int]]:
    """SIGINT and SIGTERM held back (listed, not acted on) while a worker is started:
    one arriving inside `Popen`, after the fork, raised there, before this run had a
    handle on the process, and left the worker running after the run (seen on a busy
    machine, where the fork-to-exec wait is longest). A started program gets the
    default handlers back at exec, so the worker hears its signals as usual."""
    deferred: list[int] = []
    kept = {signum: signal.signal(signum, lambda got, _: deferred.append(got))
            for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield deferred
    finally:
        for signum, handler in kept.items():
            # None: not set from Python, so never anything but the default here.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def worker_command(settings: Settings, node: str) -> list[str]:
    """The deployment's worker command (see workers/): the embedded one runs beat in
    the same process and a threads pool (LevelDB admits one process)."""
    base = [sys.executable, "-m", "celery", "-A", "spiral_tasks", "worker", "-n", node,
            "--loglevel", "INFO"]
    if settings.tasks.embedded_dir is not None:
        return [*base, "--beat", "--pool", "threads", "--concurrency", "4"]
    return [*base, "--pool", "prefork"]


def run_worker_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a worker started for one run: no metrics endpoint unless
    METRICS_PORT says where, since nobody scrapes a worker that lives for one command,
    and 9099 may well be a deployed node's on this host."""
    return {"METRICS_PORT": "0", **env}


def found_running(names: list[str]) -> WorkerHandle:
    return WorkerHandle(f"found {describe(names)} (left running)",
                        "the worker that served this run keeps running")


def find_or_start_worker(app: Celery, settings: Settings) -> WorkerHandle:
    found = workers(app)
    if found:
        return found_running(found)
    folder = settings.tasks.embedded_dir or Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "demo-worker.log"
    node = f"demo-{os.getpid()}"
    command = worker_command(settings, f"{node}@%h")
    with log_path.open("ab") as log, _interrupts_deferred() as deferred:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=run_worker_env(os.environ))
    handle = WorkerHandle(
        f"started one for this run (pid {process.pid}): celery -A spiral_tasks "
        f"{' '.join(command[5:])}", f"the worker's log: {log_path}", process)
    deadline = time.monotonic() + START_TIMEOUT_S
    mine = local_worker_name(node)
    try:
        for signum in deferred:  # what arrived while it was being started, now
            signal.raise_signal(signum)
        while mine not in workers(app):
            if process.poll() is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see its log: {log_path}")
    except BaseException:  # Ctrl-C or SIGTERM while it starts: stop it too
        handle.stop()
        raise
    if process.poll() is None:
        return handle
    # Ours stopped: another program started a worker at the same time and holds the
    # storage (LevelDB admits one process). If that one answers, it serves this run.
    found = workers(app)
    if not found:
        raise RuntimeError(f"the worker did not start; see its log: {log_path}")
    return found_running(found)
