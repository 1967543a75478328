"""How long a refused sigil takes, by the reason it is refused, per backend.

    python3 -m uv run --frozen python -m benchmarks.sigil_timing [--samples N]

`retrieve_by_sigil` must refuse in constant time: a forged sigil, a truncated one,
another tenant's, a collected memory's and one under a retired key must take the
same time, so that timing tells an attacker nothing about which check failed. Each
class has a pool of sigils; the lookups of all classes are interleaved in a random
order (so drift in the machine's load spreads over every class alike) and each is
timed alone. A valid sigil is timed too, for reference: it decodes and returns the
memory, so it may differ. Prints, per backend and class, the median and the 10th
and 90th percentiles in microseconds, and the median over the forged class's.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from benchmarks.common import BACKENDS, engine_over, open_backend, redis_server
from spiral_tasks.config import OldSecret
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.security.sigils import key_id

TENANT = "bench"
OTHER = "bench-other"
POOL = 200
CONTENT = "x" * 200


def classes(engine: SpiralMemory, retired: SpiralMemory
            ) -> dict[str, list[tuple[str, str]]]:
    """(sigil, tenant) pools by refusal reason (and the valid reference)."""
    valid = [engine.store(CONTENT, tenant=TENANT).stored.sigil for _ in range(POOL)]
    other = [engine.store(CONTENT, tenant=OTHER).stored.sigil for _ in range(POOL)]
    doomed = [engine.store(CONTENT, tenant=TENANT, memory_id=f"gone-{i}").stored.sigil
              for i in range(POOL)]
    for i in range(POOL):
        engine.collect(f"gone-{i}", tenant=TENANT)
    expired = [retired.store(CONTENT, tenant=TENANT).stored.sigil for _ in range(POOL)]
    kid = key_id(valid[0])
    return {
        "valid (reference)": [(s, TENANT) for s in valid],
        "forged": [(kid + secrets.token_hex(16), TENANT) for _ in range(POOL)],
        "forged, unknown key id": [(secrets.token_hex(20), TENANT) for _ in range(POOL)],
        "truncated": [(s[:-1], TENANT) for s in valid],
        "other tenant": [(s, TENANT) for s in other],
        "collected": [(s, TENANT) for s in doomed],
        "retired key": [(s, TENANT) for s in expired],
    }


def measure(lookup: Callable[[str, str], object], pools: dict[str, list[tuple[str, str]]],
            samples: int) -> dict[str, list[float]]:
    order = [(name, i % POOL) for name in pools for i in range(samples)]
    random.Random(7).shuffle(order)
    timings: dict[str, list[float]] = {name: [] for name in pools}
    for name, i in order[:len(pools) * 50]:  # warm up
        lookup(*pools[name][i])
    for name, i in order:
        sigil, tenant = pools[name][i]
        started = time.perf_counter_ns()
        lookup(sigil, tenant)
        timings[name].append((time.perf_counter_ns() - started) / 1000)
    return timings


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def run(backend: str, url: str, samples: int) -> None:
    retired_until = datetime.fromtimestamp(time.time() + 3600, UTC).timestamp()
    with open_backend(backend, url) as storage:
        retired_store = engine_over(storage, sigil_secret="bench-retired",
                                    max_memory_nodes=100_000)
        engine = engine_over(storage, sigil_secret="bench-current", max_memory_nodes=100_000,
                             old_sigil_secrets=[OldSecret("bench-retired", retired_until),
                                                OldSecret("bench-old", None)])
        pools = classes(engine, retired_store)
        # The retired key's time passes: its sigils are now refused.
        checker = engine_over(storage, sigil_secret="bench-current",
                              old_sigil_secrets=[OldSecret("bench-retired", 1.0),
                                                 OldSecret("bench-old", None)])
        for name, pool in pools.items():
            opened = checker.retrieve_by_sigil(*pool[0])
            assert (opened is not None) == (name == "valid (reference)"), name
        timings = measure(checker.retrieve_by_sigil, pools, samples)
    forged = statistics.median(timings["forged"])
    print(f"\n{backend}: {samples} lookups per class, interleaved")
    print(f"{'class':<26}{'median µs':>11}{'p10 µs':>9}{'p90 µs':>9}{'/forged':>9}")
    for name, values in timings.items():
        middle = statistics.median(values)
        print(f"{name:<26}{middle:>11.1f}{percentile(values, 10):>9.1f}"
              f"{percentile(values, 90):>9.1f}{middle / forged:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5000, help="lookups per class")
    parser.add_argument("--backend", choices=BACKENDS, action="append",
                        help="only this backend (repeatable)")
    args = parser.parse_args()
    with redis_server() as server:
        for backend in args.backend or BACKENDS:
            run(backend, server.url, args.samples)


if __name__ == "__main__":
    main()
