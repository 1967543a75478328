"""spiral-demo: the system at work, end to end, on whatever deployment is configured.

With nothing configured that is the embedded deployment (LevelDB storage, a broker on
local files, no server). The demo finds a running worker or starts one, sends its
work as tasks by name through the broker (as any producer would), and ends with a
summary: what ran where, how fast, the spirals, the invariant, what to run next.
"""

from __future__ import annotations

import random
import signal
import statistics
import sys
import time
from typing import Any

import click
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from spiral_tasks.cli import render
from spiral_tasks.cli.connect import Unreachable, check_broker
from spiral_tasks.cli.options import COUNT, EXIT_CODES_HELP, TENANT, Exit
from spiral_tasks.cli.worker import WorkerHandle, find_or_start_worker
from spiral_tasks.config import Settings, current
from spiral_tasks.config.redis_urls import shown_url
from spiral_tasks.errors import ConfigError, SpiralError
from spiral_tasks.model import Depth

DEPTHS = [d.value for d in Depth]
PROTECTED = {"core", "transcendent"}
#: Stores go out in waves: each links only to memories already answered.
WAVE = 50
LATENCY_SAMPLES = 20
ANSWER_TIMEOUT_S = 60.0


class Demo:
    def __init__(self, app: Celery, tenant: str, rng: random.Random, verbose: bool) -> None:
        self.app = app
        self.tenant = tenant
        self.rng = rng
        self.verbose = verbose

    def run(self, count: int, worker: WorkerHandle) -> int:
        say = click.echo
        before = self.call("spiral.stats", tenant=self.tenant)
        if before["total_memories"]:
            say(f"found existing data: {before['total_memories']} memories in "
                f"{len(before['spirals'])} spirals of tenant {self.tenant!r} (earlier runs)")
        else:
            say(f"tenant {self.tenant!r} holds no memories yet")
        say("\n1. Rebuild before the run: what every worker does when it starts (statistics "
            "recomputed from the stored nodes; nothing to correct means they were exact)")
        say(render.rebuild_report(self.call("spiral.rebuild_stats", tenant=self.tenant),
                                  self.verbose))
        say(f"\n2. Storing {count} memories through the broker (tasks by name, in waves of "
            f"{WAVE})")
        stored, refused, seconds = self.store_burst(count)
        say(f"  {count} stores in {seconds:.2f} s: {count / seconds:,.0f} stores/s")
        if refused:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(refused.items()))
            say(f"  refused: {kinds} (a tenant full of core and transcendent memories "
                "refuses stores: try another --tenant)")
        latency = sorted(self.latencies_ms())
        say(f"  one at a time: p50 {statistics.median(latency):.1f} ms, p95 "
            f"{latency[int(0.95 * len(latency))]:.1f} ms round trip")
        retrieved = [self.call("spiral.retrieve_memory", memory_id=m, tenant=self.tenant)
                     for m in self.rng.sample(stored, min(20, len(stored)))]
        victims = self.rng.sample(stored, len(stored) // 10)
        collected = sum(self.call("spiral.collect_memory", memory_id=m,
                                  tenant=self.tenant)["collected"] for m in victims)
        say(f"\n3. Retrieved {sum(r is not None for r in retrieved)}, collected {collected} by id")
        say(f"\n4. GC (the configured budget): "
            f"{render.gc_report(self.call('spiral.gc', tenant=self.tenant))}")
        say("\n5. Rebuild after the run (expect nothing to correct)")
        after = self.call("spiral.rebuild_stats", tenant=self.tenant)
        say(render.rebuild_report(after, self.verbose))
        stats = self.call("spiral.stats", tenant=self.tenant)
        say("\n6. The spirals")
        say(render.stats(stats, self.verbose))
        say(f"\nNext: spiral-enqueue --tenant {self.tenant} --stats   (send more work)\n"
            "      workers/embedded.sh   (keep a worker running; see the README for Redis)\n"
            f"      {worker.log_hint}")
        return Exit.OK if stats["consistent"] else Exit.FAILED

    def call(self, task: str, **kwargs: Any) -> Any:
        return self.app.send_task(task, kwargs=kwargs).get(timeout=ANSWER_TIMEOUT_S,
                                                           interval=0.01)

    def store_burst(self, count: int) -> tuple[list[str], dict[str, int], float]:
        """`count` stores, sent in waves, with a progress bar: the ids stored, the
        refusals by kind (a full tenant refuses), and the seconds it took. A memory
        links only to core or transcendent ones stored before it: those are never
        collected, so a link never names a memory evicted to make room meanwhile."""
        stored: list[str] = []
        lasting: list[str] = []
        refused: dict[str, int] = {}
        started = time.perf_counter()
        with click.progressbar(length=count, label="  storing", file=sys.stderr) as bar:
            for first in range(0, count, WAVE):
                depths = [self.rng.choice(DEPTHS) for _ in range(min(WAVE, count - first))]
                wave = [(depth, self.app.send_task("spiral.store_memory", kwargs={
                    "content": f"memory {first + i}: {self.rng.random():.6f}",
                    "type": "demo", "depth": depth, "tenant": self.tenant,
                    "associations": self.rng.sample(lasting, min(len(lasting),
                                                                 self.rng.randint(0, 2))),
                })) for i, depth in enumerate(depths)]
                for depth, result in wave:
                    answer = result.get(timeout=ANSWER_TIMEOUT_S, interval=0.01,
                                        propagate=False)
                    bar.update(1)
                    if result.failed():
                        kind = type(answer).__name__
                        refused[kind] = refused.get(kind, 0) + 1
                        continue
                    stored.append(answer["id"])
                    if depth in PROTECTED:
                        lasting.append(answer["id"])
        return stored, refused, time.perf_counter() - started

    def latencies_ms(self) -> list[float]:
        """Round trips of single stores, one at a time (producer to worker and back;
        a refusal from a full tenant is a round trip too)."""
        samples = []
        for i in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            self.app.send_task("spiral.store_memory", kwargs={
                "content": f"timed {i}", "type": "demo", "tenant": self.tenant,
            }).get(timeout=ANSWER_TIMEOUT_S, interval=0.01, propagate=False)
            samples.append((time.perf_counter() - started) * 1000)
        return samples

def run(app: Celery, settings: Settings, count: int, tenant: str, seed: int | None,
        verbose: bool) -> int:
    say = click.echo
    try:
        check_broker(app)
    except Unreachable as exc:
        say(f"spiral-demo: {exc}", err=True)
        return Exit.FAILED
    say(f"spiral-demo: {where(settings)}")
    try:
        worker = find_or_start_worker(app, settings)
    except RuntimeError as exc:
        say(f"spiral-demo: {exc}", err=True)
        return Exit.FAILED
    say(f"worker: {worker.description}")
    try:
        return Demo(app, tenant, random.Random(seed), verbose).run(count, worker)
    except SpiralError as exc:  # a task's own error, rebuilt from its result
        say(f"spiral-demo: a task failed: {type(exc).__name__}: {exc}", err=True)
        return Exit.FAILED
    except CeleryTimeout:
        say(f"spiral-demo: no answer within {ANSWER_TIMEOUT_S:g} s; is the worker still "
            f"running? ({worker.log_hint})", err=True)
        return Exit.NO_ANSWER
    finally:
        worker.stop()


def where(settings: Settings) -> str:
    tasks = settings.tasks
    if settings.storage.value == "level":
        storage = f"LevelDB at {settings.db_path}"
    elif settings.redis_url:
        storage = f"Redis at {shown_url(settings.redis_url)}"
    else:
        storage = settings.storage.value
    kind = "embedded deployment (no server)" if tasks.embedded_dir else "Redis deployment"
    return f"{kind}; broker {shown_url(tasks.broker_url)}; storage {storage}"



@click.command(name="spiral-demo", epilog=EXIT_CODES_HELP,
               short_help="The system at work, end to end, through a worker.")
@click.option("--count", type=COUNT, default=500, show_default=True,
              help="Memories to store.")
@click.option("--tenant", type=TENANT, default="demo", show_default=True,
              help="Tenant to work in.")
@click.option("--seed", type=int, default=None, help="Random seed, for repeatable runs.")
@click.option("--verbose", is_flag=True,
              help="Print every spiral and every corrected counter in full.")
def command(count: int, tenant: str, seed: int | None, verbose: bool) -> None:
    """Store, retrieve, collect, garbage-collect and rebuild through a worker, then
    print a summary.

    Uses the deployment the environment configures: by default the embedded one
    (LevelDB in ./spiraldb, broker in ./spiral-embedded, no server); with REDIS_URL,
    Redis. Finds a running worker, or starts one for the run and stops it after.
    """
    # SIGTERM (kill, timeout, a supervisor) unwinds like Ctrl-C, so the worker this run
    # started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    try:
        settings = current()
        from spiral_tasks.tasks.app import app  # noqa: PLC0415 - --help needs no broker
    except ConfigError as exc:
        click.echo(f"spiral-demo: {exc}", err=True)
        sys.exit(Exit.USAGE)
    sys.exit(run(app, settings, count, tenant, seed, verbose))


def main(argv: list[str] | None = None) -> None:
    command.main(args=argv, prog_name="spiral-demo")


if __name__ == "__main__":
    main()
