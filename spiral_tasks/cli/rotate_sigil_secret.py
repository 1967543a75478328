"""spiral rotate-sigil-secret: a new sigil key, the old one accepted for a grace
period, every stored memory re-signed under the new one.

With the key kept in storage (no SPIRAL_SIGIL_SECRET), this command does the whole
rotation (see `security/rotation.py`). With SPIRAL_SIGIL_SECRET set, the keys live in
the environment, which no command can change for running processes: it prints the
steps instead and changes nothing; `--resign-only` is its last step.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

import click

from spiral_tasks.cli import progress
from spiral_tasks.cli.storage import opened, settings, where
from spiral_tasks.config import Settings, StorageKind
from spiral_tasks.security.keyring import ConfiguredKeys
from spiral_tasks.security.resign import ResignReport
from spiral_tasks.security.rotation import Rotation, rotate_stored

EXIT_CODES_HELP = ("Exit codes: 0 done; 1 the storage cannot be opened or reached (LevelDB "
                   "held by a running worker included); 2 bad arguments or settings "
                   "(nothing done); 3 SPIRAL_SIGIL_SECRET is set: nothing changed, the "
                   "steps to rotate it are printed.")
#: Exit code when SPIRAL_SIGIL_SECRET is set: nothing changed, the steps printed.
CONFIGURED = 3
HELD = ("stop the worker first: a rotation rewrites every tenant's records "
        "(workers/embedded.sh stops on Ctrl-C)")
DAY_S = 86400.0
#: Added to SPIRAL_SIGIL_REFRESH_S when waiting for every process to read the keyring
#: again: an operation that began with the old one finishes meanwhile.
SETTLE_MARGIN_S = 1.0


@click.command(name="rotate-sigil-secret", epilog=EXIT_CODES_HELP,
               short_help="Rotate the sigils' key, then re-sign every memory.")
@click.option("--grace-days", type=click.FloatRange(min=0, max=3650), default=7.0,
              show_default=True,
              help="How long sigils under the old key keep working. 0: they stop at "
                   "once (the secret leaked).")
@click.option("--resign-only", is_flag=True,
              help="Change no key: give every memory not signed under the signing key a "
                   "sigil that is (after a rotation of SPIRAL_SIGIL_SECRET, or to finish "
                   "an interrupted run).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(grace_days: float, resign_only: bool, as_json: bool) -> None:
    """Rotate the key that signs sigils without refusing any sigil at once: a new key
    is announced (accepted everywhere), then made the signing key, the old one
    accepted for --grace-days; then every memory is given a sigil under the new key
    (tenant by tenant under each tenant's lock; its old sigil keeps working through
    the grace period). On Redis it waits twice for every worker to read the keys
    again (SPIRAL_SIGIL_REFRESH_S each).

    With SPIRAL_SIGIL_SECRET set, prints the steps to rotate it and changes nothing.
    """
    config = settings()
    grace_s = grace_days * DAY_S
    if config.sigils.secret and not resign_only:
        _print_steps(config, grace_s, as_json)
        sys.exit(CONFIGURED)
    with opened(config, HELD) as engine:
        rotation = None
        if not resign_only:
            rotation = rotate_stored(engine.storage, grace_s=grace_s, now=time.time,
                                     settle=lambda why: _settle(config, why))
        with progress.bar("re-signing", len(engine.tenants())) as advance:
            report = engine.resign_sigils(on_tenant=lambda _: advance())
    if as_json:
        click.echo(json.dumps({"rotation": rotation.to_json() if rotation else None,
                               "resign": report.to_json()}))
        return
    if rotation is not None:
        click.echo(_rotated(config, rotation))
    click.echo(_resigned(report))


def _settle(config: Settings, why: str) -> None:
    """Wait until every process has read the keyring again: only Redis is shared (the
    command holds LevelDB alone, and in-memory storage is its own)."""
    if config.storage is not StorageKind.REDIS:
        return
    wait = config.sigils.refresh_s + SETTLE_MARGIN_S
    click.echo(f"waiting {wait:g} s until {why} (SPIRAL_SIGIL_REFRESH_S + "
               f"{SETTLE_MARGIN_S:g})", err=True)
    time.sleep(wait)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _rotated(config: Settings, rotation: Rotation) -> str:
    kept = ("sigils under it stop now (grace 0)" if rotation.previous_until is None
            else f"its sigils are accepted until {_when(rotation.previous_until)}")
    again = " (taking up the key an interrupted run announced)" if rotation.resumed else ""
    return (f"rotated the sigil key on {where(config)}: key id {rotation.previous_key_id} "
            f"-> {rotation.key_id}{again}; {kept}")


def _resigned(report: ResignReport) -> str:
    dropped = (f"; removed the index entries of {report.dropped} sigils under keys not "
               "accepted" if report.dropped else "")
    return (f"re-signed {report.resigned} of {report.memories} memories in "
            f"{len(report.tenants)} tenant(s) under key id {report.key_id} in "
            f"{report.duration_ms:.0f} ms{dropped}")


def _print_steps(config: Settings, grace_s: float, as_json: bool) -> None:
    """What the operator does when the keys live in the environment. No secret is
    printed: the new one is made by the operator, the current one is named."""
    keyring = ConfiguredKeys(config.sigils.secret or "", config.sigils.old_secrets).current()
    until = _when(time.time() + grace_s)
    if as_json:
        click.echo(json.dumps({"configured": True, "changed": False,
                               "key_id": keyring.active.kid,
                               "accepted_key_ids": [k.kid for k in keyring.keys],
                               "old_secret_until": until if grace_s > 0 else None}))
        return
    held = ",<the entries it holds now>" if config.sigils.old_secrets else ""
    old = (f"SPIRAL_SIGIL_OLD_SECRETS=<the current SPIRAL_SIGIL_SECRET>@{until}{held}"
           if grace_s > 0 else f"SPIRAL_SIGIL_OLD_SECRETS={held.lstrip(',') or '(unset)'}"
           "   (grace 0: the current secret's sigils stop at once)")
    click.echo("\n".join([
        "SPIRAL_SIGIL_SECRET is set in the environment, so the new secret goes there too: "
        f"nothing was changed (signing key id {keyring.active.kid}; accepted: "
        f"{', '.join(k.kid for k in keyring.keys)}).",
        "To rotate without refusing any sigil, on every process that reads the settings "
        "(workers, beat, the spiral command; on Kubernetes the Secret spiral-secrets):",
        "  1. make a new secret and have it accepted before it signs, then restart every "
        "process:",
        "       NEW=$(python3 -c 'import secrets; print(secrets.token_hex(32))')",
        f"       SPIRAL_SIGIL_OLD_SECRETS=$NEW{held}",
        "  2. make it the signing secret, the current one accepted for the grace period, "
        "then restart every process:",
        "       SPIRAL_SIGIL_SECRET=$NEW",
        f"       {old}",
        "  3. give the stored memories sigils under the new secret:",
        "       spiral rotate-sigil-secret --resign-only",
        "Remove the old secret from SPIRAL_SIGIL_OLD_SECRETS once its time has passed "
        "(it is refused from then on anyway). See ops/RUNBOOK.md.",
    ]))
