"""What encryption at rest and the audit log cost the store path, separately and
together, against both off: one run.

    python3 -m uv run --frozen python -m benchmarks.security_cost [--rounds 3]

Four configurations, measured round after round in a rotating order (so none always
runs first or on a warmer machine): both off, encryption only (a
SPIRAL_ENCRYPTION_KEY: memory records sealed with AES-256-GCM), the audit log only (an
entry hashed, signed and appended in each commit), both on. In process: `--ops`
`engine.store` calls from 8 threads into one tenant, per backend, each run on a fresh
store. Through a real worker: one node (`-P prefork -c 2`) on a private redis-server
flushed before each run, the store task's peak as `benchmarks.tasks` measures it.
Prints each configuration's median stores/s and its ratio to both off.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import BACKENDS, drive, engine_over, median, open_backend, redis_server
from benchmarks.metrics_cost import IN_PROCESS_CALLERS, cost_arguments, task_peak
from spiral_tasks.config import AuditSettings, EncryptionSettings
from spiral_tasks.testing.encryption import key_env, new_key, sealing

#: (encrypted, audited) per configuration, in the order they are printed.
CONFIGURATIONS = {"both off": (False, False), "encryption": (True, False),
                  "audit log": (False, True), "both on": (True, True)}


def in_process_rate(backend: str, redis_url: str, encrypted: bool, audited: bool,
                    ops: int) -> float:
    encryption = sealing(new_key()) if encrypted else EncryptionSettings()
    with open_backend(backend, redis_url, encryption) as storage:
        engine = engine_over(storage, max_memory_nodes=1_000_000,
                             audit=AuditSettings(enabled=audited))
        engine.store("warm-up", tenant="bench")
        run = drive(lambda i: engine.store(f"memory {i}", tenant="bench"), ops,
                    IN_PROCESS_CALLERS)
        assert engine.stats("bench").consistent
        return run.rate


def worker_rate(redis_url: str, workdir: Path, tasks: int, encrypted: bool,
                audited: bool) -> float:
    settings = {"SPIRAL_AUDIT": "1" if audited else "0"}
    if encrypted:
        settings |= key_env(new_key())
    return task_peak(redis_url, workdir, tasks, **settings)


def rotate(rounds: int, measure: Callable[[bool, bool], float]) -> dict[str, float]:
    """Each configuration's median over `rounds`, the order rotating each round."""
    names = list(CONFIGURATIONS)
    taken: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            taken[name].append(measure(*CONFIGURATIONS[name]))
    return {name: median(values) for name, values in taken.items()}


def report(label: str, rates: dict[str, float]) -> None:
    base = rates["both off"]
    print(f"{label}: " + "   ".join(f"{name} {rate:,.0f}/s ({rate / base:.3f})"
                                    for name, rate in rates.items()), flush=True)


def main() -> None:
    args = cost_arguments(__doc__)
    with redis_server() as server:
        for backend in BACKENDS:
            report(f"in process, {backend}", rotate(
                args.rounds, lambda encrypted, audited, b=backend: in_process_rate(
                    b, server.url, encrypted, audited, args.ops)))
        with tempfile.TemporaryDirectory() as workdir:
            report("store task peak, worker", rotate(
                args.rounds, lambda encrypted, audited: worker_rate(
                    server.url, Path(workdir), args.tasks, encrypted, audited)))


if __name__ == "__main__":
    main()
