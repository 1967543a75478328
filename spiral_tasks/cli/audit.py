"""spiral audit: check the audit log's chain (`verify`) and read it (`show`).

Both open the configured storage themselves, like repair and stats (with LevelDB,
only while no worker holds it). `verify` reads each tenant's log under the tenant's
lock, so a commit landing meanwhile cannot look like tampering.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click

from spiral_tasks.audit.chain import Signer
from spiral_tasks.audit.verify import Verdict, entries, verify_locked
from spiral_tasks.cli.options import TENANT, Exit
from spiral_tasks.cli.storage import BadSettings, Failed, opened, settings
from spiral_tasks.engine import SpiralMemory

#: verify's exit codes: a script can tell a broken chain from a check that could not run.
HOLDS = 0
BROKEN = 1
UNCHECKED = Exit.NO_ANSWER  # 3


class Unchecked(Failed):
    """The storage could not be read: the chain was not checked (exit code 3)."""

    exit_code = UNCHECKED

VERIFY_EXIT_HELP = ("Exit codes: 0 every chain holds; 1 a chain does not (the first bad "
                    "entry is named); 2 bad arguments or settings; 3 the check could not "
                    "run (storage unreachable, LevelDB held by a worker).")
SHOW_EXIT_HELP = ("Exit codes: 0 done; 1 the storage cannot be opened or reached; 2 bad "
                  "arguments or settings.")
HELD = "stop the worker to read its LevelDB, or run this where the store is served by Redis"
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Since(click.ParamType[float]):
    """A moment: an ISO 8601 time (UTC unless it says) or a time ago (30s, 15m, 2h, 7d)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        ago = _AGO.match(text)
        if ago:
            return datetime.now(UTC).timestamp() - float(ago[1]) * _UNIT_S[ago[2]]
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is neither an ISO 8601 time (2026-11-26T10:00:00) nor a "
                      "time ago (30s, 15m, 2h, 7d)", param, ctx)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()


@click.group(name="audit", short_help="Verify and read the audit log.")
def command() -> None:
    """The audit log: every store, collect, GC, rebuild, repair, backup and restore,
    per tenant, hash-chained and signed (see the README's "Audit log")."""


@command.command(name="verify", epilog=VERIFY_EXIT_HELP)
@click.option("--tenant", type=TENANT, default=None,
              help="Only this tenant (default: every tenant).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: each tenant's verdict.")
def verify_command(tenant: str | None, as_json: bool) -> None:
    """Check each tenant's chain from its checkpoint (or its first entry) to its head,
    and name the first entry that was removed, altered, reordered or inserted."""
    config = settings()
    try:
        with opened(config, HELD) as engine:
            signer = Signer.load(engine.storage, config.audit.key)
            tenants = [tenant] if tenant else engine.tenants()
            verdicts = [_verdict(engine, signer, t, len(tenants)) for t in tenants]
    except BadSettings:
        raise
    except Failed as exc:
        raise Unchecked(exc.message) from exc
    ok = all(v.ok for v in verdicts)
    if as_json:
        click.echo(json.dumps({"ok": ok, "tenants": [v.to_json() for v in verdicts]}))
    else:
        for verdict in verdicts:
            click.echo(_said(verdict))
        click.echo(f"{len(verdicts)} tenant(s): " + ("every chain holds" if ok else
                   f"{sum(not v.ok for v in verdicts)} chain(s) broken"))
    sys.exit(HOLDS if ok else BROKEN)


def _verdict(engine: SpiralMemory, signer: Signer, tenant: str, total: int) -> Verdict:
    if total > 1:
        click.echo(f"verifying {tenant}", err=True)
    return verify_locked(engine.sections, signer, tenant)


def _said(verdict: Verdict) -> str:
    start = "" if verdict.checkpoint is None else f" from checkpoint {verdict.checkpoint}"
    if verdict.first_bad is None:
        return f"{verdict.tenant}: holds, {verdict.entries} entries{start}"
    bad = verdict.first_bad
    where = "" if bad.position is None else f" at position {bad.position}"
    seq = "" if bad.seq is None else f" (entry {bad.seq})"
    return f"{verdict.tenant}: BROKEN{where}{seq}: {bad.why}"


@command.command(name="show", epilog=SHOW_EXIT_HELP)
@click.option("--tenant", type=TENANT, default="default", show_default=True)
@click.option("--since", type=Since(), default=None,
              help="Only entries from this time: ISO 8601 (UTC unless it says) or a time "
                   "ago (30s, 15m, 2h, 7d).")
@click.option("--op", default=None, help="Only this operation (store, collect, gc, ...).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, as stored.")
def show_command(tenant: str, since: float | None, op: str | None, as_json: bool) -> None:
    """The tenant's audit entries, oldest first: time, seq, operation, memory ids,
    task id and worker."""
    with opened(settings(), HELD) as engine:
        for entry in _selected(engine, tenant, since, op):
            click.echo(json.dumps(entry) if as_json else _line(entry))


def _selected(engine: SpiralMemory, tenant: str, since: float | None,
              op: str | None) -> Iterator[dict[str, Any]]:
    for _, entry in entries(engine.storage, tenant):
        if not isinstance(entry, dict):
            continue  # verify names it
        if since is not None and not (isinstance(entry.get("time"), int | float)
                                      and entry["time"] >= since):
            continue
        if op is None or entry.get("op") == op:
            yield entry


def _line(entry: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(float(entry.get("time") or 0), UTC)
    ids = entry.get("ids") or []
    shown = " ".join(ids[:3]) + (f" (+{len(ids) - 3} more)" if len(ids) > 3 else "")
    return (f"{when.isoformat(timespec='milliseconds')} #{entry.get('seq')} "
            f"{entry.get('op')} [{shown}] task={entry.get('task') or '-'} "
            f"worker={entry.get('worker') or '-'}")
