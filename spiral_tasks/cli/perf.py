"""spiral perf store|collect|gc: the runbook's `perf:store`, honouring PERF_ITERATIONS,
PERF_CONCURRENCY and REDIS_URL (see `spiral_tasks/perf/`)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from celery.exceptions import TimeoutError as CeleryTimeout

from spiral_tasks.cli import progress, render
from spiral_tasks.cli.connect import Unreachable, check_broker, workers
from spiral_tasks.cli.options import TENANT
from spiral_tasks.cli.storage import BadSettings, Failed, opened, settings, where
from spiral_tasks.config import Settings
from spiral_tasks.errors import ConfigError
from spiral_tasks.perf import inprocess, remote
from spiral_tasks.perf.locks import LockWaits
from spiral_tasks.perf.measure import Run

#: The runbook's bar for the error rate.
MAX_ERROR_RATE = 0.001
EXIT_CODES_HELP = ("Exit codes: 0 measured, the invariant holds and under 0.1% of the "
                   "operations failed; 1 otherwise, or a service cannot be reached (with "
                   "--through-celery: the broker, or no worker answering); 2 bad "
                   "arguments or settings (PERF_ITERATIONS, PERF_CONCURRENCY...: nothing "
                   "done).")


#: What a run's operations are called in its figures.
UNITS = {"store": "stores", "collect": "collects", "gc": "GC calls"}
#: What a run does, in words.
PLANS = {"store": "{n} stores", "collect": "{n} stores (unmeasured), then {n} collects",
         "gc": "{n} stores due at once (unmeasured), then GC calls until none is left"}


def figures(name: str, run: Run) -> list[str]:
    total = run.ops or 1
    return [
        f"latency      p50 {run.percentile(50):.3f} ms   p95 {run.percentile(95):.3f} ms   "
        f"p99 {run.percentile(99):.3f} ms",
        f"throughput   {run.rate:,.0f} {name}/s ({run.ops} in {run.seconds:.2f} s)",
        f"errors       {run.error_count} ({run.error_count / total:.2%}; runbook: under "
        f"{MAX_ERROR_RATE:.1%})" + (f": {run.errors}" if run.errors else ""),
    ]


def invariant(stats: dict[str, Any]) -> str:
    return "invariant    " + render.stats(stats).splitlines()[1].removeprefix("invariant: ")


def passed(run: Run, stats: dict[str, Any]) -> bool:
    return bool(stats["consistent"]) and run.error_count <= MAX_ERROR_RATE * run.ops


def in_process(config: Settings, workload: inprocess.Workload, as_json: bool) -> bool:
    waits = LockWaits()
    held = (f"measure through it instead (spiral perf {workload.operation} "
            "--through-celery), or stop the worker")
    engine_config = inprocess.engine_settings(config, workload.operation)
    if not as_json:
        plan = PLANS[workload.operation].format(n=workload.iterations)
        click.echo(f"spiral perf {workload.operation}: {plan} in tenant {workload.tenant!r} "
                   f"on {where(config)}, {workload.concurrency} concurrent callers, in "
                   "this process")
    with opened(engine_config, held, observer=waits) as engine:
        report = inprocess.run(engine, waits, workload, progress.bar)
    stats = report.stats.to_json()
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        lines = figures(UNITS[workload.operation], report.run)
        if report.collected is not None:
            lines.append(f"collected    {report.collected} of {report.prepared} prepared, "
                         f"{report.run.ops} GC calls of a {report.budget_ms:g} ms budget "
                         "(each call one pause: the latencies above)")
        lines += [f"lock wait    {report.lock_share:.1%} of the operations' time "
                  f"({report.waits.waited_s:.3f} s over {report.waits.acquired} "
                  f"acquisitions; {report.waits.timed_out} timed out, "
                  f"{report.waits.lost} lost)", invariant(stats)]
        click.echo("\n".join(lines))
    return passed(report.run, stats)


def remote_run(workload: inprocess.Workload, as_json: bool) -> bool:
    try:
        from spiral_tasks.tasks.app import app  # noqa: PLC0415 - --help needs no broker
    except ConfigError as exc:
        raise BadSettings(str(exc)) from exc
    try:
        check_broker(app)
    except Unreachable as exc:
        raise Failed(str(exc)) from exc
    serving = workers(app)
    if not serving:
        raise Failed("no worker answered: start one (workers/embedded.sh, or celery -A "
                     "spiral_tasks worker with REDIS_URL set), then measure again")
    if not as_json:
        click.echo(f"spiral perf {workload.operation} --through-celery: "
                   f"{workload.iterations} tasks, then as many spiral.noop, "
                   f"{workload.concurrency} in flight, tenant {workload.tenant!r}, "
                   f"served by {', '.join(serving)}")
    try:
        report = remote.run(app, workload, progress.bar)
    except CeleryTimeout as exc:
        raise Failed(f"no answer within {remote.ANSWER_TIMEOUT_S:g} s: are the workers "
                     "still running? (what was sent stays queued)") from exc
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        operation = workload.operation
        lines = [
            f"{operation} (round trips as the producer sees them, "
            f"{workload.concurrency} in flight)",
            *(f"  {line}" for line in figures("tasks", report.run)),
            "noop (the yardstick: broker, results, Celery, no work)",
            *(f"  {line}" for line in figures("tasks", report.noop)),
        ]
        if report.paced is not None and report.noop_paced is not None:
            lines += [
                f"at half the {operation} throughput ({report.rate:,.0f} tasks/s sent on "
                "schedule, noop first)",
                f"  {operation:<6} {latencies(report.paced)}",
                f"  {'noop':<6} {latencies(report.noop_paced)}",
            ]
        lines += [
            f"ratio        {operation}/noop throughput {report.ratio:.2f}, p95 at half "
            f"the {operation} throughput {report.p95_ratio:.2f}",
            "lock wait    not visible from a producer (spiral perf without "
            "--through-celery measures it)",
            invariant(report.stats)]
        click.echo("\n".join(lines))
    runs = [r for r in (report.run, report.paced) if r is not None]
    return all(passed(r, report.stats) for r in runs)


def latencies(run: Run) -> str:
    return (f"p50 {run.percentile(50):.3f} ms   p95 {run.percentile(95):.3f} ms   "
            f"p99 {run.percentile(99):.3f} ms   errors {run.error_count}")


@click.command(name="perf", epilog=EXIT_CODES_HELP,
               short_help="Measure store, collect or gc (the runbook's perf:store).")
@click.argument("operation", type=click.Choice(inprocess.OPERATIONS))
@click.option("--tenant", type=TENANT, default="perf", show_default=True,
              help="The tenant to work in (what a run stores stays there).")
@click.option("--through-celery", is_flag=True,
              help="Send the operations as tasks to the running workers, beside as many "
                   "spiral.noop tasks, and compare: throughput with PERF_CONCURRENCY in "
                   "flight, then p95 latency with both sent at half the operation's "
                   "throughput.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def command(operation: str, tenant: str, through_celery: bool, as_json: bool) -> None:
    """Measure OPERATION (store, collect or gc): PERF_ITERATIONS operations (1000) from
    PERF_CONCURRENCY callers (8), then p50/p95/p99 latency, throughput, errors, the
    share of time spent waiting for locks, and the invariant check.

    In this process against the configured storage by default (REDIS_URL: Redis);
    collect first stores the memories it collects, gc stores memories due at once.
    """
    config = settings()
    workload = inprocess.Workload(operation, tenant, config.perf.iterations,
                                  config.perf.concurrency)
    ok = (remote_run(workload, as_json) if through_celery
          else in_process(config, workload, as_json))
    sys.exit(0 if ok else 1)

