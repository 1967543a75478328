"""A documented deployment left running under a steady trickle of stores.

    python3 -m uv run --frozen python -m benchmarks.soak --deployment embedded --minutes 15
    python3 -m uv run --frozen python -m benchmarks.soak --deployment redis --minutes 15

Starts the deployment exactly as the README and `workers/` do, with the default
settings: `workers/embedded.sh` (worker and beat in one process), or a private
redis-server (appendonly) with two `workers/worker.sh` and two `workers/beat.sh`.
A producer then stores `--rate` memories a second (and collects one in ten) for
`--minutes`. At the end it prints what it saw and fails (exit 1) unless: no process
died or restarted, every store was answered exactly once, beat sent the periodic GC
about once per SPIRAL_GC_EVERY_S, no log holds a traceback or an unrecoverable error,
and the invariant is exact with a clean rebuild.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery

from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import worker_env
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
TENANT = "soak"
PROBLEMS = re.compile(r"Traceback|Unrecoverable error|CRITICAL/|LockNotOwnedError")
GC_SENT = "Sending due task spiral-gc"


class Service:
    """One deployed process: a script from workers/, its log, and its pid."""

    def __init__(self, name: str, script: str, args: list[str], env: dict[str, str],
                 workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(["bash", str(ROOT / "workers" / script), *args],
                                            cwd=workdir, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(deployment: str, workdir: Path) -> tuple[dict[str, str], list[Service],
                                                   RedisServer | None]:
    bin_dir = str(Path(sys.executable).parent)
    if deployment == "embedded":
        env = worker_env(None, PATH=f"{bin_dir}:{os.environ['PATH']}",
                         SPIRAL_EMBEDDED_DIR=str(workdir / "spiral-embedded"),
                         SPIRAL_DB_PATH=str(workdir / "spiraldb"))
        return env, [Service("embedded", "embedded.sh", ["-n", "soak@%h"], env, workdir)], None
    (workdir / "redis").mkdir()
    server = RedisServer(workdir / "redis").start("--appendonly", "yes",
                                                  "--appendfsync", "everysec")
    env = worker_env(server.url, PATH=f"{bin_dir}:{os.environ['PATH']}")
    services = [Service(f"worker{n}", "worker.sh", ["-n", f"w{n}@%h", "--concurrency", "2"],
                        env, workdir) for n in (1, 2)]
    services += [Service(f"beat{n}", "beat.sh", [], env, workdir) for n in (1, 2)]
    return env, services, server


def trickle(app: Celery, minutes: float, rate: float,
            services: list[Service]) -> tuple[int, list[float], list[str]]:
    """Store `rate` memories a second for `minutes`; return stores answered, their round
    trips (ms) and the problems seen (a store answered wrongly, a process gone)."""
    problems: list[str] = []
    latencies: list[float] = []
    answered: set[str] = set()
    end = time.monotonic() + minutes * 60
    n = 0
    while time.monotonic() < end:
        due = time.monotonic() + 1 / rate
        started = time.perf_counter()
        memory_id = f"soak-{n}"
        answer = app.send_task("spiral.store_memory", kwargs={
            "content": f"trickle {n}", "tenant": TENANT, "memory_id": memory_id,
            "depth": ("surface", "shallow", "deep")[n % 3]}).get(timeout=60, interval=0.01)
        latencies.append((time.perf_counter() - started) * 1000)
        if answer["id"] != memory_id or not answer["created"] or memory_id in answered:
            problems.append(f"store {memory_id} answered {answer}")
        answered.add(memory_id)
        if n % 10 == 9:
            app.send_task("spiral.collect_memory", kwargs={
                "memory_id": f"soak-{n - 5}", "tenant": TENANT}).get(timeout=60)
        problems += [f"{s.name} exited with {s.process.returncode}" for s in services
                     if not s.alive() and f"{s.name} exited" not in " ".join(problems)]
        n += 1
        time.sleep(max(0.0, due - time.monotonic()))  # the trickle's pace, not a wait
    return len(answered), latencies, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployment", choices=("embedded", "redis"), required=True)
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--rate", type=float, default=5, help="stores per second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env, services, server = start(args.deployment, workdir)
        app = create_app(env)
        try:
            wait_until(lambda: app.control.ping(timeout=1), 120, message="a worker")
            started = time.monotonic()
            stores, latencies, problems = trickle(app, args.minutes, args.rate, services)
            elapsed = time.monotonic() - started
            stats = app.send_task("spiral.stats", kwargs={"tenant": TENANT}).get(timeout=60)
            rebuild = app.send_task("spiral.rebuild_stats",
                                    kwargs={"tenant": TENANT}).get(timeout=300)
        finally:
            for service in services:
                service.stop()
            if server is not None:
                server.stop()
        logs = {s.name: s.log() for s in services}
    gc_sends = sum(log.count(GC_SENT) for log in logs.values())
    expected_gcs = elapsed / 60  # SPIRAL_GC_EVERY_S's default
    problems += [f"{name}: {m.group(0)}" for name, log in logs.items()
                 for m in PROBLEMS.finditer(log)]
    if not abs(gc_sends - expected_gcs) <= 1.5:
        problems.append(f"beat sent {gc_sends} periodic GCs in {elapsed:.0f} s")
    if not stats["consistent"]:
        problems.append(f"invariant broken: {stats}")
    if rebuild["corrected_spirals"] or rebuild["corrected_counters"]:
        problems.append(f"rebuild corrected something: {rebuild}")
    ordered = sorted(latencies)
    print(f"{args.deployment}: {elapsed / 60:.1f} min, {stores} stores answered once each, "
          f"round trip p50 {statistics.median(ordered):.1f} ms, p99 "
          f"{ordered[int(0.99 * len(ordered))]:.1f} ms; {len(services)} processes, none "
          f"died: {all('exited' not in p for p in problems)}; periodic GC sent "
          f"{gc_sends} times (expected ~{expected_gcs:.0f}); tenant {TENANT}: "
          f"{stats['total_memories']} memories, consistent {stats['consistent']}, "
          f"rebuild clean {not (rebuild['corrected_spirals'] or rebuild['corrected_counters'])}")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
