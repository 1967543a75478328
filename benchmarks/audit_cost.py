"""What the audit log costs the store path: on against off, in one run.

    python3 -m uv run --frozen python -m benchmarks.audit_cost [--rounds 3] [--tasks N]

In process: `engine.store` from 8 threads into one tenant with the audit log on (an
entry hashed, signed and appended in each commit, the head read in the lock's round
trip and rewritten) and off, per backend. Through a real worker: one node
(`-P prefork -c 2`) on a private redis-server flushed before each run, started with
SPIRAL_AUDIT=1 and SPIRAL_AUDIT=0; each run measures the store task's peak as
`benchmarks.tasks` does. On and off alternate, each first in every other round
(`metrics_cost.alternate`). Prints the medians and the ratio on/off.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import BACKENDS, redis_server
from benchmarks.metrics_cost import alternate, cost_arguments, report, task_peak
from benchmarks.security_cost import in_process_rate


def main() -> None:
    args = cost_arguments(__doc__)
    with redis_server() as server:
        for backend in BACKENDS:
            on, off = alternate(args.rounds, lambda audited, b=backend: in_process_rate(
                b, server.url, False, audited, args.ops))
            report(f"in process, {backend}", on, off)
        with tempfile.TemporaryDirectory() as workdir:
            on, off = alternate(args.rounds, lambda audited: task_peak(
                server.url, Path(workdir), args.tasks, SPIRAL_AUDIT="1" if audited else "0"))
        report("store task peak, worker", on, off)


if __name__ == "__main__":
    main()
