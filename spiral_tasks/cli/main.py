"""spiral: one command for operating the system, a subcommand per job.

    spiral repair    rebuild the statistics, print the runbook's repair report
    spiral perf      the runbook's perf:store (and collect, gc)
    spiral backup    a portable snapshot to a file
    spiral restore   a snapshot back into any backend
    spiral rotate-key  re-seal every memory record under the current encryption key
    spiral stats     a tenant's spirals and the invariant
    spiral rotate-sigil-secret   a new sigil key, the old one kept for a grace period
    spiral quarantine  the corrupt records rebuilds set aside (and purging them)
    spiral demo      the system at work, end to end (also spiral-demo)
    spiral enqueue   send work to running workers (also spiral-enqueue)
    spiral audit     verify the audit log's chain, read its entries

Every subcommand reads the same settings (the environment: REDIS_URL, SPIRAL_DB_PATH,
...), checks its arguments before it has any effect, says what went wrong in one
line, and documents its exit codes in its --help.
"""

from __future__ import annotations

import click

from spiral_tasks.cli import (
    audit,
    backup,
    demo,
    enqueue,
    perf,
    quarantine,
    repair,
    restore,
    rotate_key,
    rotate_sigil_secret,
    stats,
)


@click.group(name="spiral", context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Each subcommand's --help lists its options and exit codes. Settings "
                    "come from the environment (see the README's configuration table).")
def spiral() -> None:
    """Operate the Spiral Memory Architecture: repair, measure, back up, restore,
    rotate the encryption key, inspect, and send work, on the deployment the
    environment configures (embedded LevelDB by default; Redis with REDIS_URL)."""


for name, command in [("repair", repair.command), ("perf", perf.command),
                      ("backup", backup.command), ("restore", restore.command),
                      ("stats", stats.command), ("quarantine", quarantine.command),
                      ("rotate-key", rotate_key.command),
                      ("rotate-sigil-secret", rotate_sigil_secret.command),
                      ("audit", audit.command), ("demo", demo.command),
                      ("enqueue", enqueue.command)]:
    spiral.add_command(command, name)


def main(argv: list[str] | None = None) -> None:
    spiral.main(args=argv, prog_name="spiral")


if __name__ == "__main__":
    main()
