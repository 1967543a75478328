"""spiral quarantine: the records a rebuild moved aside as corrupt, and their removal
once an operator has dealt with them (README, "Corrupt records"; ops/RUNBOOK.md).

A rebuild (`spiral repair`, `spiral.rebuild_stats`, a worker's startup rebuild) moves
a record it cannot read, or that does not hold what its key says, to
`t:{T}:quarantine:<rest of its key>@<ms>`, keeping its key, why, when and what was
there. This lists them (`--json`: the whole envelopes, the bytes in base64) and
deletes those named with `--purge`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from spiral_tasks import quarantine
from spiral_tasks.cli.options import TENANT
from spiral_tasks.cli.storage import Failed, opened, settings
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.keys import split_tenant_key

EXIT_CODES_HELP = ("Exit codes: 0 done; 1 the storage cannot be opened or reached (LevelDB "
                   "held by a running worker included), or a --purge key is not in "
                   "quarantine (nothing purged); 2 bad arguments or settings (nothing "
                   "done).")
HELD = "stop the worker first: no task lists or purges the quarantine"


def kept(envelope: dict[str, Any]) -> str:
    """What the envelope kept of the record, in words."""
    if "raw_base64" in envelope:
        return f"{len(envelope['raw_base64']) * 3 // 4:,} bytes as stored (raw_base64)"
    return f"its value ({len(json.dumps(envelope.get('value'))):,} bytes of JSON)"


def line(where: str, envelope: dict[str, Any]) -> str:
    at = envelope.get("quarantined_at")
    when = (datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
            if isinstance(at, int | float) else "?")
    return (f"{where}\n  was {envelope['key']}, moved {when}: {envelope['reason']}\n"
            f"  kept {kept(envelope)}")


@click.command(name="quarantine", epilog=EXIT_CODES_HELP,
               short_help="List (or purge) the corrupt records rebuilds set aside.")
@click.option("--tenant", type=TENANT, default=None,
              help="This tenant only (default: every tenant).")
@click.option("--purge", "purged", multiple=True, metavar="KEY",
              help="Delete this quarantined record (its quarantine key, as listed); "
                   "repeat for more. All or nothing per tenant.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the records as JSON: each quarantine key with its whole "
                   "envelope (key, reason, quarantined_at, raw_base64 or value).")
def command(tenant: str | None, purged: tuple[str, ...], as_json: bool) -> None:
    """List the records rebuilds moved to quarantine as corrupt, or delete some with
    --purge once dealt with (brought back from a backup, stored again by their
    producer, or judged lost). A quarantined record no longer counts as a memory."""
    by_tenant: dict[str, list[str]] = {}
    for key in purged:
        owner = split_tenant_key(key)
        if owner is None or (tenant is not None and owner[0] != tenant):
            raise click.BadParameter(f"{key[:120]!r} is not a quarantine key"
                                     + (f" of tenant {tenant!r}" if tenant else ""),
                                     param_hint="--purge")
        by_tenant.setdefault(owner[0], []).append(key)
    with opened(settings(), HELD) as engine:
        if by_tenant:
            try:
                for owner_tenant, keys in by_tenant.items():
                    quarantine.purge(engine.sections, owner_tenant, keys)
            except InvalidArgument as exc:
                raise Failed(f"{exc.problem}; nothing purged from that tenant") from exc
            click.echo(f"purged {len(purged)} quarantined record(s)", err=as_json)
            return
        tenants = [tenant] if tenant else engine.tenants()
        found = [(where, envelope) for t in tenants
                 for where, envelope in quarantine.listed(engine.sections, t)]
    if as_json:
        click.echo(json.dumps({"count": len(found),
                               "records": {where: env for where, env in found}}))
        return
    click.echo(f"{len(found)} record(s) in quarantine"
               + (f" in tenant {tenant}" if tenant else f" in {len(tenants)} tenant(s)"))
    for where, envelope in found:
        click.echo(line(where, envelope))
