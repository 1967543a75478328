"""spiral restore FILE: a backup written back into whichever backend is configured,
only after the whole file checked out (see `spiral_tasks/backup/restore.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spiral_tasks.backup import BackupRefused, TargetNotEmpty, restore, verify
from spiral_tasks.cli import progress, render
from spiral_tasks.cli.storage import Failed, opened, settings
from spiral_tasks.security.atrest import codec_for

EXIT_CODES_HELP = ("Exit codes: 0 restored; 1 refused (a damaged, truncated or "
                   "mismatched file, or a target holding tenants without --replace: "
                   "nothing written) or the storage cannot be opened or reached; 2 bad "
                   "arguments or settings (nothing done).")
HELD = "stop the worker first, then restore (LevelDB admits one process at a time)"


@click.command(name="restore", epilog=EXIT_CODES_HELP,
               short_help="Restore a backup file into the configured storage.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True,
              help="Replace whatever the target holds with the backup's tenants "
                   "(default: refuse a target that holds any tenant).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(file: Path, replace: bool, as_json: bool) -> None:
    """Restore FILE (from spiral backup, any backend) into the configured storage.

    The whole file is checked before anything is written: its header, counts and
    checksum, every key in its tenant's namespace, every value. Then each tenant is
    written under its lock; a rebuild check (a dry run) ends it.
    """
    config = settings()
    try:
        # Refuse a bad file before even opening the store (sealed records opened with
        # this process's keys).
        header = verify(file, codec_for(config.encryption))
    except BackupRefused as exc:
        raise Failed(f"refused {file}: {exc}; nothing was written") from exc
    with opened(config, HELD) as engine, \
            progress.bar("restoring", header.keys + header.index_entries) as advance:
        try:
            summary = restore(engine, file, replace=replace, on_lines=advance)
        except (BackupRefused, TargetNotEmpty) as exc:
            raise Failed(f"refused {file}: {exc}; nothing was written") from exc
    if as_json:
        click.echo(json.dumps(summary.to_json()))
        return
    replaced = f" (replaced {len(summary.replaced)} tenant(s))" if summary.replaced else ""
    click.echo(f"restored {file}: {render.backup_counts(summary.to_json())} in "
               f"{summary.duration_ms:.0f} ms{replaced}")
    for warning in summary.warnings:
        click.echo(f"note: {warning}")
    click.echo("rebuild check: " + ("clean" if summary.rebuild_clean else
                                    "the backup's statistics had drifted: run spiral repair"))
