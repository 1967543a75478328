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

from benchmarks.common import BACKENDS, drive, engine_over, open_backend, redis_server
from benchmarks.metrics_cost import IN_PROCESS_CALLERS, alternate, cost_arguments, report, task_peak
from spiral_tasks.config import AuditSettings


def in_process_rate(backend: str, redis_url: str, audited: bool, ops: int) -> float:
    with open_backend(backend, redis_url) as storage:
        engine = engine_over(storage, max_memory_nodes=1_000_000,
                             audit=AuditSettings(enabled=audited))
        engine.store("warm-up", tenant="bench")
        run = drive(lambda i: engine.store(f"memory {i}", tenant="bench"), ops,
                    IN_PROCESS_CALLERS)
        assert engine.stats("bench").consistent
        return run.rate


def main() -> None:
    args = cost_arguments(__doc__)
    with redis_server() as server:
        for backend in BACKENDS:
            on, off = alternate(args.rounds, lambda audited, b=backend: in_process_rate(
                b, server.url, audited, args.ops))
            report(f"in process, {backend}", on, off)
        with tempfile.TemporaryDirectory() as workdir:
            on, off = alternate(args.rounds, lambda audited: task_peak(
                server.url, Path(workdir), args.tasks, SPIRAL_AUDIT="1" if audited else "0"))
        report("store task peak, worker", on, off)


if __name__ == "__main__":
    main()
