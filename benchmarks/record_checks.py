"""What checking every record costs a rebuild, on LevelDB: the rebuild of a store,
and in the same run the record checks alone over the same records.

    python3 -m uv run --frozen python -m benchmarks.record_checks [--nodes 100000]

A rebuild reads every record strictly (`spiral_tasks/records.py`): a memory record
must be an object with every field of its type, its id and tenant those of its key,
its spiral id and sigil usable as key parts; else it is quarantined. The checks are
timed alone by running `records.memory_record` over the decoded records, so the
figure is their share of the rebuild, measured in one run. Best of `--repeat`.
"""

from __future__ import annotations

import argparse
import time

import orjson

from benchmarks.common import engine_over, open_backend
from spiral_tasks import records
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.base import Storage

PER_TENANT = 2500
DEPTHS = ["surface", "shallow", "deep", "core", "transcendent"]


def load(storage: Storage, nodes: int) -> list[str]:
    engine = engine_over(storage)
    tenants = [f"t{t}" for t in range(nodes // PER_TENANT)]
    for tenant in tenants:
        for i in range(PER_TENANT):
            engine.store(f"memory {i} of {tenant}", depth=DEPTHS[i % 5], tenant=tenant)
    return tenants


def best(repeat: int, run: object) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with open_backend("level") as storage:
        tenants = load(storage, args.nodes)
        rebuild_s = best(args.repeat, lambda: engine_over(storage).rebuild_stats())
        stored = [(key, value) for tenant in tenants
                  for key, value in storage.scan(TenantKeys(tenant).memories)]
        raws = [orjson.dumps(value) for _, value in stored]
        decode_s = best(args.repeat, lambda: [orjson.loads(raw) for raw in raws])
        check_s = best(args.repeat, lambda: [records.memory_record(key, value)
                                              for key, value in stored])
    nodes = len(stored)
    print(f"level, {nodes:,} nodes in {len(tenants)} tenants, best of {args.repeat}")
    print(f"rebuild        {rebuild_s:6.3f} s  ({nodes / rebuild_s:,.0f} nodes/s)")
    print(f"decode alone   {decode_s:6.3f} s  ({decode_s / nodes * 1e6:.2f} us a record)")
    print(f"checks alone   {check_s:6.3f} s  ({check_s / nodes * 1e6:.2f} us a record, "
          f"{check_s / rebuild_s:.0%} of the rebuild)")


if __name__ == "__main__":
    main()
