"""spiral repair (alias spiral-repair, the runbook's name): rebuild the spirals'
statistics from the stored nodes, on the backend the environment selects, and print
the runbook's repair report.

It opens the storage itself, like the runbook's tool. With LevelDB that is only
possible while no worker holds the folder; a running worker can be sent the same
rebuild as a task (`spiral-enqueue --rebuild`), which is what the message says.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from spiral_tasks.cli import progress, render
from spiral_tasks.cli.options import TENANT
from spiral_tasks.cli.storage import Failed, opened, settings, where
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import CorruptRecord
from spiral_tasks.rebuild import RebuildReport

#: spiral repair's own exit codes: a script (cron, CI) can tell a clean store from a
#: repaired one; every error, bad arguments included, is 1.
CLEAN = 0
ERROR = 1
CORRECTED = 2
EXIT_CODES_HELP = ("Exit codes: 0 nothing to correct; 2 corrections applied, corrupt "
                   "records quarantined included (with --dry-run: corrections found, "
                   "nothing written); 1 an error (storage unreachable, LevelDB held by a "
                   "running worker, bad arguments or settings), said in one line, or a "
                   "tenant refused (most of its records unreadable: a wrong key or "
                   "codec), said in the report.")


class RepairUsageError(click.UsageError):
    exit_code = ERROR


class RepairCommand(click.Command):
    """A click command whose usage errors exit 1, not click's 2: for repair, 2 means
    "corrections applied"."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise RepairUsageError(exc.message, exc.ctx) from exc


def current_state(engine: SpiralMemory, tenants: list[str]) -> dict[str, int]:
    """Memories and spirals before the rebuild, as the runbook reports them. A tenant
    whose spirals or total are corrupt cannot be counted (yet): it is counted apart,
    and the rebuild quarantines what is corrupt."""
    memories = spirals = unreadable = 0
    for tenant in tenants:
        try:
            stats = engine.stats(tenant)
        except CorruptRecord:
            unreadable += 1
            continue
        memories += stats.total_memories
        spirals += len(stats.spirals)
    return {"tenants": len(tenants), "memories": memories, "spirals": spirals,
            "unreadable_tenants": unreadable}


def rebuild(engine: SpiralMemory, tenant: str | None, dry_run: bool,
            tenants: list[str]) -> RebuildReport:
    """The rebuild, with a progress bar on stderr over many tenants."""
    if len(tenants) <= 1:
        return engine.rebuild_stats(tenant, dry_run=dry_run, audit_as="repair")
    with progress.bar("rebuilding", len(tenants)) as advance:
        return engine.rebuild_stats(tenant, dry_run=dry_run, on_tenant=lambda _: advance(),
                                    audit_as="repair")


def text_report(source: str, init_ms: float, state: dict[str, int], dry_run: bool,
                report: RebuildReport, total_ms: float, verbose: bool) -> str:
    lines = [
        "Spiral Memory Repair Tool",
        render.RULE,
        f"Initializing: {source}",
        f"Initialization completed in {init_ms:.2f} ms",
        "",
        "Starting spiral statistics rebuild" + (" (dry run: nothing is written)"
                                                if dry_run else ""),
        f"Current state: {state['memories']} memories across {state['spirals']} spirals "
        f"in {state['tenants']} tenant(s)" + (
            f" ({state['unreadable_tenants']} not counted: corrupt records)"
            if state["unreadable_tenants"] else ""),
        "",
        "REPAIR REPORT" + (" (dry run)" if dry_run else ""),
        render.RULE,
        render.rebuild_report(report.to_json(), verbose),
        "",
    ]
    if report.refused:
        lines.append(f"{len(report.refused)} tenant(s) refused, left as they were: check "
                     "the storage settings and repair again. The others: completed in "
                     f"{total_ms:.2f} ms")
    elif report.clean:
        lines.append(f"Nothing to correct. Repair completed in {total_ms:.2f} ms")
    elif dry_run:
        lines.append("Corrections found; nothing was written (dry run): run without "
                     f"--dry-run to apply them. Completed in {total_ms:.2f} ms")
    else:
        lines.append(f"Corrections applied. Repair completed in {total_ms:.2f} ms")
    return "\n".join(lines)


@click.command(name="repair", cls=RepairCommand, epilog=EXIT_CODES_HELP,
               short_help="Rebuild the statistics; print the repair report.")
@click.option("--tenant", type=TENANT, default=None,
              help="Rebuild this tenant only (default: every tenant).")
@click.option("--dry-run", is_flag=True,
              help="Compute and report the corrections without writing any.")
@click.option("--verbose", is_flag=True,
              help="Also list every corrected counter and unchanged spiral.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as one JSON object instead.")
def command(tenant: str | None, dry_run: bool, verbose: bool, as_json: bool) -> None:
    """Rebuild the spirals' statistics from the stored nodes and print the repair
    report (the runbook's spiral-repair).

    Opens the storage the environment selects (LevelDB in SPIRAL_DB_PATH by default,
    Redis with REDIS_URL). While a worker holds LevelDB, send it the rebuild instead:
    spiral-enqueue --rebuild --tenant T.
    """
    config = settings(Failed)  # exit 1: 2 means corrections applied
    source = where(config)
    started = time.perf_counter()
    with opened(config, "send it the rebuild instead (spiral-enqueue --rebuild"
                + (f" --tenant {tenant}" if tenant else "") + "), or stop the worker and "
                "run spiral repair again") as engine:
        init_ms = (time.perf_counter() - started) * 1000
        tenants = [tenant] if tenant else engine.tenants()
        state = current_state(engine, tenants)
        report = rebuild(engine, tenant, dry_run, tenants)
    total_ms = (time.perf_counter() - started) * 1000
    code = ERROR if report.refused else CLEAN if report.clean else CORRECTED
    if as_json:
        seconds = report.duration_ms / 1000
        click.echo(json.dumps({
            "storage": source, "dry_run": dry_run, "initialization_ms": round(init_ms, 3),
            "current_state": state, "report": report.to_json(), "clean": report.clean,
            "nodes_per_second": round(report.total_nodes / seconds, 1) if seconds else None,
            "target_met": seconds < render.REBUILD_TARGET_S,
            "total_ms": round(total_ms, 3), "exit_code": code}))
    else:
        click.echo(text_report(source, init_ms, state, dry_run, report, total_ms, verbose))
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """The spiral-repair console script: `spiral repair` under the runbook's name."""
    command.main(args=argv, prog_name="spiral-repair")


if __name__ == "__main__":
    main()
