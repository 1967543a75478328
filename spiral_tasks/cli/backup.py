"""spiral backup --out FILE: a portable snapshot of every tenant (see
`spiral_tasks/backup/`), from whichever backend is configured."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spiral_tasks.backup import take
from spiral_tasks.cli import progress, render
from spiral_tasks.cli.storage import Failed, opened, settings, where

EXIT_CODES_HELP = ("Exit codes: 0 written; 1 the storage cannot be opened or reached "
                   "(LevelDB held by a running worker included), FILE exists (see "
                   "--force) or cannot be written; 2 bad arguments or settings (nothing "
                   "done).")
HELD = ("stop the worker first: a backup reads every tenant, which no task does "
        "(workers/embedded.sh stops on Ctrl-C)")


@click.command(name="backup", epilog=EXIT_CODES_HELP,
               short_help="Write every tenant to a portable file.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="The file to write (JSON lines).")
@click.option("--with-secret", is_flag=True,
              help="Also carry the sigil key, so a restore elsewhere signs new memories "
                   "under the same key. The file is then a credential: keep it so.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(out: Path, with_secret: bool, force: bool, as_json: bool) -> None:
    """Write every tenant (records, spirals, counters, sigils, GC queue, tombstones,
    markers) to FILE, each tenant read whole under its lock, with a header, counts
    and a checksum. Restore it into any backend with spiral restore.

    The file appears whole or not at all, readable by its owner only.
    """
    config = settings()
    if out.exists() and not force:
        raise Failed(f"{out} exists: pass --force to replace it")
    if not out.resolve().parent.is_dir():
        raise Failed(f"{out.parent} is not a folder")
    with opened(config, HELD) as engine, \
            progress.bar("backing up", len(engine.tenants())) as advance:
        summary = take(engine, out, source=where(config), with_secret=with_secret,
                       on_tenant=lambda _: advance())
    data = summary.to_json()
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(f"wrote {out}: {render.backup_counts(data)}, {data['bytes']:,} bytes in "
               f"{data['duration_ms']:.0f} ms")
    click.echo(f"checksum {data['checksum']}; sigil key "
               + ("included (keep the file secret)" if with_secret else
                  f"not included (fingerprint {summary.header.sigil_fingerprint})"))
    sealed = summary.header.sealing_key_id
    click.echo(f"memory records sealed under key id {sealed} (a restore needs that key)"
               if sealed else "memory records in the clear (no SPIRAL_ENCRYPTION_KEY)")
