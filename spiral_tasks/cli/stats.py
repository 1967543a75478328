"""spiral stats: what the `spiral.stats` task returns, read directly from the
configured storage (no worker needed, unless one holds LevelDB)."""

from __future__ import annotations

import json

import click

from spiral_tasks.cli import render
from spiral_tasks.cli.options import TENANT
from spiral_tasks.cli.storage import opened, settings

EXIT_CODES_HELP = ("Exit codes: 0 done; 1 the storage cannot be opened or reached "
                   "(LevelDB held by a running worker included); 2 bad arguments or "
                   "settings (nothing done).")


@click.command(name="stats", epilog=EXIT_CODES_HELP,
               short_help="A tenant's spirals and the invariant.")
@click.option("--tenant", type=TENANT, default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print exactly what the spiral.stats task returns, as JSON.")
@click.option("--verbose", is_flag=True, help="List every spiral (default: the first 8).")
def command(tenant: str, as_json: bool, verbose: bool) -> None:
    """A tenant's total, spirals and node records, and the invariant (total == sum of
    the spirals' node counts == node records), read under the tenant's lock."""
    held = ("stop the worker, or ask it (celery -A spiral_tasks call spiral.stats "
            f"--kwargs '{{\"tenant\": \"{tenant}\"}}', then celery -A spiral_tasks "
            "result <task id>)")
    with opened(settings(), held) as engine:
        stats = engine.stats(tenant).to_json()
    click.echo(json.dumps(stats) if as_json else render.stats(stats, verbose))
