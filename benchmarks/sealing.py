"""The cost of encryption at rest on the store path: stores with and without a key, in
one run, alternated round by round.

    python3 -m uv run --frozen python -m benchmarks.sealing [--ops N] [--rounds R]

This machine's speed drifts from day to day, so both sides are measured in the same
run, alternately (off then on in odd rounds, on then off in even ones), on fresh stores
of each backend: `--ops` stores into one tenant (limits raised so nothing is evicted)
from 1 and 8 threads sharing one engine, with contents of 100 bytes and of 16 KiB
(AES-GCM's cost grows with the bytes sealed; the rest of a store does not). It prints
the median stores/s of each side, their ratio (on / off) and the p99 latencies.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from benchmarks.common import BACKENDS, drive, engine_over, open_backend, redis_server
from spiral_tasks.config import EncryptionSettings
from spiral_tasks.testing.encryption import new_key, sealing

CALLERS = (1, 8)
SIZES = (100, 16 * 1024)
DEPTHS = ["surface", "shallow", "deep"]


def measure(backend: str, url: str, encryption: EncryptionSettings, size: int,
            callers: int, ops: int) -> tuple[float, float]:
    """(stores/s, p99 ms) of `ops` stores of `size`-byte contents."""
    filler = "x" * size
    with open_backend(backend, url, encryption) as storage:
        engine = engine_over(storage, max_memory_nodes=1_000_000)
        engine.store("warm-up", tenant="bench")
        run = drive(lambda i: engine.store(f"{i} {filler}", depth=DEPTHS[i % 3],
                                           tenant="bench"), ops, callers)
        assert engine.stats("bench").consistent
    return run.rate, run.percentile(99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    args = parser.parse_args()
    sides = {"off": EncryptionSettings(), "on": sealing(new_key())}
    found: dict[tuple[str, str, int, int], list[tuple[float, float]]] = {}
    with redis_server() as server:
        for round_ in range(args.rounds):
            order = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
            for backend in args.backends:
                for size in SIZES:
                    for callers in CALLERS:
                        for side in order:
                            found.setdefault((side, backend, size, callers), []).append(
                                measure(backend, server.url, sides[side], size, callers,
                                        args.ops))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    print(f"stores/s, median of {args.rounds} rounds ({args.ops} stores each); "
          "p99 in ms (median)")
    print(f"{'backend':<8}{'content':>9}{'callers':>8}{'off':>9}{'on':>9}{'on/off':>8}"
          f"{'p99 off':>9}{'p99 on':>8}")
    for backend in args.backends:
        for size in SIZES:
            for callers in CALLERS:
                off, on = (found[(side, backend, size, callers)] for side in ("off", "on"))
                rate_off = statistics.median(r for r, _ in off)
                rate_on = statistics.median(r for r, _ in on)
                print(f"{backend:<8}{size:>9,}{callers:>8}{rate_off:>9,.0f}{rate_on:>9,.0f}"
                      f"{rate_on / rate_off:>8.2f}"
                      f"{statistics.median(p for _, p in off):>9.3f}"
                      f"{statistics.median(p for _, p in on):>8.3f}")


if __name__ == "__main__":
    main()
