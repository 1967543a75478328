"""Reading the low end of a LevelDB index after its low end was deleted, as GC does.

    python3 -m uv run --frozen python -m benchmarks.level_queue [--entries N]
        [--deleted N ...] [--reads N]

GC takes the lowest-scored entries of a tenant's queue and deletes them; LevelDB keeps
each deleted key as a deletion marker until compaction carries it to the last level.
An index of `--entries` entries (with a 200-byte record beside each, as a memory has)
loses its `--deleted` lowest in batches of 64; then `index_range(q, 64)` is read
`--reads` times, and its CPU time per read printed (`time.process_time`: the machine's
other load moves it little). The first read of a fresh storage object finds the
live entries' start; the others seek there (`LevelStorage._index_range`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from spiral_tasks.storage.base import Delete, IndexPut, IndexRemove, Put
from spiral_tasks.storage.level import LevelStorage

BATCH = 64


def fill(path: Path, entries: int, deleted: int) -> None:
    with LevelStorage(path) as storage:
        for i in range(0, entries, 100):
            span = range(i, min(entries, i + 100))
            storage.apply([IndexPut("q", f"m{j:08d}", float(j)) for j in span]
                          + [Put(f"k{j}", "x" * 200) for j in span])
        for i in range(0, deleted, BATCH):
            span = range(i, min(deleted, i + BATCH))
            storage.apply([IndexRemove("q", f"m{j:08d}") for j in span]
                          + [Delete(f"k{j}") for j in span])


def cpu_per_read(path: Path, reads: int) -> tuple[float, float]:
    """(the first read, the mean of the rest), CPU microseconds, on a fresh opening."""
    with LevelStorage(path) as storage:
        started = time.process_time()
        storage.index_range("q", BATCH)
        first = time.process_time() - started
        started = time.process_time()
        for _ in range(reads):
            storage.index_range("q", BATCH)
        return first * 1e6, (time.process_time() - started) / reads * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=30_000)
    parser.add_argument("--deleted", type=int, nargs="+", default=[0, 5_000, 20_000])
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    print(f"index_range(q, {BATCH}) of {args.entries} entries, CPU µs per read")
    print(f"{'deleted':>8} {'first read':>12} {'later reads':>12}")
    for deleted in args.deleted:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "db"
            fill(path, args.entries, deleted)
            first, later = cpu_per_read(path, args.reads)
        print(f"{deleted:>8} {first:>12.0f} {later:>12.0f}")


if __name__ == "__main__":
    main()
