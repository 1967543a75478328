"""spiral rotate-key: every memory record re-sealed under the key this process seals
with (`SPIRAL_ENCRYPTION_KEY`), tenant by tenant under each tenant's lock, while
workers keep serving (see `spiral_tasks/security/resealing.py`)."""

from __future__ import annotations

import json

import click

from spiral_tasks.cli import progress
from spiral_tasks.cli.options import Exit
from spiral_tasks.cli.storage import BadSettings, opened, settings, where
from spiral_tasks.security.resealing import RotationReport, TenantRotation, rotate

EXIT_CODES_HELP = ("Exit codes: 0 every memory record is sealed under the current key "
                   "(--dry-run: nothing to re-seal); 1 the storage cannot be opened or "
                   "reached, a record does not open (a key missing from "
                   "SPIRAL_DECRYPTION_KEYS, a damaged record), or records under another key "
                   "remain (--dry-run: some would be re-sealed; otherwise a worker still "
                   "seals with another key): run it again, it resumes; 2 bad arguments or "
                   "settings, no SPIRAL_ENCRYPTION_KEY included (nothing done).")
HELD = ("stop the worker, rotate, then start it with the new key (LevelDB admits one "
        "process at a time)")


@click.command(name="rotate-key", epilog=EXIT_CODES_HELP,
               short_help="Re-seal every memory record under the current key.")
@click.option("--dry-run", is_flag=True,
              help="Open every record and count what would be re-sealed; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(dry_run: bool, as_json: bool) -> None:
    """Re-seal every memory record under SPIRAL_ENCRYPTION_KEY, opening each with
    whichever configured key sealed it (the old one in SPIRAL_DECRYPTION_KEYS), or
    sealing it if it is in the clear (a store that had no key). Tenant by tenant,
    under each tenant's lock, in atomic chunks: workers keep serving meanwhile.

    Resumable: records already under the current key are left alone, so a rotation
    that was interrupted (even killed) is finished by running it again. When no record
    is left under another key, the store forgets the other keys: a process holding
    only an old key is then refused at start.
    """
    config = settings()
    if config.encryption.key is None:
        raise BadSettings("needs SPIRAL_ENCRYPTION_KEY (or SPIRAL_ENCRYPTION_KEY_FILE): the "
                          "key to seal under; put the old key in SPIRAL_DECRYPTION_KEYS")
    with opened(config, HELD) as engine, \
            progress.bar("re-sealing", len(engine.tenants())) as advance:
        report = rotate(engine, dry_run=dry_run, on_tenant=lambda _: advance())
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(_text(report, where(config)))
    if not report.complete:
        raise SystemExit(Exit.FAILED)


def _tenant_line(done: TenantRotation) -> str:
    sources = ", ".join(f"{n} from {'the clear' if k == 'plain' else 'key id ' + k}"
                        for k, n in sorted(done.sources.items()))
    return (f"  tenant {done.tenant}: {done.resealed} re-sealed"
            + (f" ({sources})" if sources else "") + f", {done.current} already current")


def _text(report: RotationReport, source: str) -> str:
    verb = "would re-seal" if report.dry_run else "re-sealed"
    lines = [f"spiral rotate-key{' --dry-run' if report.dry_run else ''}: {source}, "
             f"sealing under key id {report.key_id}"]
    lines += [_tenant_line(t) for t in report.tenants if t.resealed or t.current]
    lines.append(f"{verb} {report.resealed} memory record(s) in {len(report.tenants)} "
                 f"tenant(s), {report.current} already under {report.key_id}, in "
                 f"{report.duration_ms:.0f} ms")
    if report.dry_run:
        return "\n".join(lines)
    if report.complete:
        forgotten = (", the store forgot " + ", ".join(report.markers_removed)
                     if report.markers_removed else "")
        lines.append(f"done: every memory record is sealed under {report.key_id}{forgotten}")
    else:
        lines.append(f"not done: {report.left} record(s) were written under another key "
                     "meanwhile (a process still seals with it): give every worker the new "
                     "key as SPIRAL_ENCRYPTION_KEY, then run spiral rotate-key again")
    return "\n".join(lines)

