"""Server-less brokers for the embedded deployment, measured through a real worker.

    python3 -m uv run --frozen --with sqlalchemy python -m benchmarks.brokers [--tasks N]

(`--with sqlalchemy` only for the kombu SQLAlchemy candidate; without it that row
is skipped.) For each candidate broker and result backend, one embedded worker
exactly as `workers/embedded.sh` starts it (`worker --beat --pool threads
--concurrency 4`, LevelDB storage) and, in this process, one producer:

- noop/s, store/s: N tasks sent at once, timed from the first send to the last
  answer read back through the result backend (N/elapsed);
- send/s: how fast the producer published them;
- idle CPU: the worker's CPU use over 5 s with nothing to do (its polling);
- outcome: whether the worker survived and every task was answered.

Candidates: kombu's filesystem transport with `file://` results (the old default),
the same transport with atomic publication and claims by rename
(`benchmarks/fs_atomic.py`, not production-ready), kombu's SQLAlchemy transport on
SQLite with Celery's database results, and ours (`spiral-sqlite://`, the default).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from benchmarks import fs_atomic
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import worker_env

IDLE_S = 5.0


@dataclass(frozen=True)
class Candidate:
    name: str
    #: (broker URL, result backend URL) in a working folder
    urls: Callable[[Path], tuple[str, str]]
    needs: str | None = None


CANDIDATES = [
    Candidate("kombu filesystem + file results (old default)",
              lambda d: ("filesystem://", f"file://{d}/results")),
    Candidate("filesystem, atomic publish + claim by rename + file results",
              lambda d: (f"{fs_atomic.SCHEME}://", f"file://{d}/results")),
    Candidate("kombu SQLAlchemy on SQLite + Celery database results",
              lambda d: (f"sqla+sqlite:///{d}/kombu.sqlite3",
                         f"db+sqlite:///{d}/celery-results.sqlite3"), needs="sqlalchemy"),
    Candidate("spiral-sqlite broker + spiral-sqlite results (chosen)",
              lambda d: (f"spiral-sqlite://{d}/broker.sqlite3",
                         f"spiral-sqlite://{d}/results.sqlite3")),
]


def filesystem_options(folder: Path) -> dict[str, Any]:
    """kombu's filesystem transport needs its folders named (both fs candidates)."""
    for name in ("queue", "control", "results"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"), "store_processed": False,
            "polling_interval": 0.05}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collect(results: list[AsyncResult], worker: subprocess.Popen[bytes],
            timeout: float) -> int:
    """Answers read back before the worker died or `timeout` passed."""
    deadline = time.monotonic() + timeout
    answered = 0
    for result in results:
        while True:
            if worker.poll() is not None or time.monotonic() > deadline:
                return answered
            try:
                result.get(timeout=0.5, interval=0.005)
                answered += 1
                break
            except TimeoutError:
                continue
            except Exception as exc:  # a torn result file: the race being measured
                if "Timeout" in type(exc).__name__:
                    continue
                print(f"    result.get raised {type(exc).__name__}: {exc}", flush=True)
                return answered
    return answered


def run_tasks(app: Celery, worker: subprocess.Popen[bytes], name: str,
              kwargs: Callable[[int], dict[str, Any]], count: int) -> tuple[str, str]:
    started = time.perf_counter()
    results = [app.send_task(name, kwargs=kwargs(i)) for i in range(count)]
    sent = time.perf_counter() - started
    answered = collect(results, worker, timeout=max(120.0, count / 5))
    elapsed = time.perf_counter() - started
    if answered < count:
        state = "worker died" if worker.poll() is not None else "stalled"
        return (f"{state} after {answered}/{count}", f"{count / sent:,.0f}")
    return (f"{count / elapsed:,.0f}", f"{count / sent:,.0f}")


def measure(candidate: Candidate, tasks: int) -> list[str]:
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)
        broker, backend = candidate.urls(folder)
        env = worker_env(None, SPIRAL_EMBEDDED_DIR=str(folder / "embedded"),
                         SPIRAL_DB_PATH=str(folder / "spiraldb"),
                         SPIRAL_BROKER_URL=broker, SPIRAL_RESULT_BACKEND=backend,
                         SPIRAL_MAX_MEMORY_NODES="1000000")
        app = create_app(env)
        if broker.startswith(("filesystem", fs_atomic.SCHEME)):
            app.conf.broker_transport_options = filesystem_options(folder)
            env["SPIRAL_BENCH_FS_FOLDER"] = str(folder)
        elif broker.startswith("sqla"):
            # kombu passes every transport option on to SQLAlchemy's create_engine.
            app.conf.broker_transport_options = {}
            env["SPIRAL_BENCH_NO_TRANSPORT_OPTIONS"] = "1"
        log = (folder / "worker.log").open("ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.broker_worker", "-A", "spiral_tasks", "worker",
             "--beat", "--pool", "threads", "--concurrency", "4", "-n", "bench@%h",
             "-l", "WARNING"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            app.send_task("spiral.noop").get(timeout=60, interval=0.01)  # ready
            cpu = cpu_seconds(worker.pid)
            time.sleep(IDLE_S)  # measuring idleness itself, not waiting for anything
            idle = (cpu_seconds(worker.pid) - cpu) / IDLE_S
            noop = run_tasks(app, worker, "spiral.noop", lambda _: {}, tasks)
            store = run_tasks(app, worker, "spiral.store_memory",
                              lambda i: {"content": f"benchmark memory {i} " + "x" * 100,
                                         "tenant": "bench"}, tasks) \
                if worker.poll() is None else ("not run: worker died", "")
            died = worker.poll() is not None
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        crashes = [line for line in (folder / "worker.log").read_text(errors="replace")
                   .splitlines() if "Unrecoverable error" in line or "CRITICAL" in line]
    outcome = "worker died: " + crashes[0][-90:] if died and crashes else (
        "worker died" if died else "ok")
    return [candidate.name, noop[0], store[0], noop[1], f"{idle:.1%}", outcome]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per measurement")
    args = parser.parse_args()
    fs_atomic.register()
    print("| candidate | noop/s | store/s | send/s | idle CPU | outcome |")
    print("| --- | ---: | ---: | ---: | ---: | --- |", flush=True)
    for candidate in CANDIDATES:
        if candidate.needs and importlib.util.find_spec(candidate.needs) is None:
            print(f"| {candidate.name} | skipped: no {candidate.needs} | | | | |", flush=True)
            continue
        print("| " + " | ".join(measure(candidate, args.tasks)) + " |", flush=True)


if __name__ == "__main__":
    main()
