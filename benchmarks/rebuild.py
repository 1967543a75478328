"""rebuild_stats() against a raw scan-and-decode of the same records, on LevelDB and
Redis, at 100k and 1M nodes.

    python3 -m uv run --frozen python -m benchmarks.rebuild [--sizes 100000 1000000]
        [--backends level redis] [--rounds 3]

Nodes are stored through the engine (2,500 per tenant, inside the default limits,
encryption off; stores into one tenant from many threads, which the engine combines
into batches; a LevelDB store is then compacted, so no compaction left over from the
load runs in this process's threads while it is measured), then each round times, in
turns first, a rebuild of every tenant by a
fresh engine (nothing cached) and a raw scan-and-decode of every memory record with
the same client: for LevelDB one plyvel iterator per tenant prefix and
`orjson.loads`; for Redis SCAN over the key space (MATCH the memory keys, large COUNT)
with an MGET per batch and `orjson.loads`. The store is clean, so a rebuild writes no
correction: the ratio is what the rebuild's own work (locks, record checks, counting,
reconciling) leaves of the raw read rate. That ratio is issue 10's target; a second,
"all records", is printed beside it: the raw scan-and-decode of every record the
rebuild reads (the memory records, and also each tenant's sigil index entries and GC
queue, which the rebuild must read to find orphans and the raw scan does not). Each is
also timed in CPU seconds (this process, plus the Redis server's own), which a machine
shared with other jobs inflates less than the wall clock. Last, one rebuild after
corrupting one counter per tenant shows the cost of repairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle

import orjson

from benchmarks.common import backend_arguments, engine_over, median, open_backend, redis_server
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.level import LevelStorage, unsortable
from spiral_tasks.storage.redis import RedisStorage

PER_TENANT = 2500
DEPTHS = ["surface", "shallow", "deep", "core", "transcendent"]
#: Keys a raw Redis SCAN asks for per call, and so the size of each MGET.
RAW_SCAN_COUNT = 10_000
#: Tenant locks live longer than by default (2 s): on a machine shared with other
#: jobs a batch of stores, or one tenant's rebuild, can stall longer than that, and
#: then fails with LockLost. How long a lock lives changes no work measured.
LOCK_TTL_S = 30.0


def tenant_names(nodes: int) -> list[str]:
    return [f"t{t}" for t in range(nodes // PER_TENANT)]


def load(storage: Storage, nodes: int) -> float:
    """Store `nodes` memories through the engine, 16 threads on one tenant at a time
    (combined into the engine's batches), and return the seconds it took."""
    engine = engine_over(storage, ttl_s=LOCK_TTL_S)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for tenant in tenant_names(nodes):
            list(pool.map(lambda i, tenant=tenant: engine.store(
                f"memory {i} of {tenant}", depth=DEPTHS[i % 5], tenant=tenant),
                range(PER_TENANT)))
    return time.perf_counter() - started


def raw_level(storage: LevelStorage, tenants: list[str]) -> int:
    """Every memory record decoded, straight from the plyvel iterator."""
    loads, found = orjson.loads, 0
    for tenant in tenants:
        with storage.db.iterator(prefix=TenantKeys(tenant).memories.encode()) as it:
            for _, raw in it:
                loads(raw)
                found += 1
    return found


def scan_and_decode(storage: RedisStorage, match: str) -> int:
    """Every string value under keys matching `match` decoded: SCAN for the keys,
    MGET each batch, `orjson.loads`."""
    client, loads, found, cursor = storage.client, orjson.loads, 0, 0
    while True:
        cursor, batch = client.scan(cursor, match=match, count=RAW_SCAN_COUNT,
                                    _type="string")
        if batch:
            for raw in client.mget(batch):
                if raw is not None:
                    loads(raw)
                    found += 1
        if cursor == 0:
            return found


def raw_redis(storage: RedisStorage, tenants: list[str]) -> int:
    """Every memory record decoded."""
    return scan_and_decode(storage, "t:{*}:mem:*")


def raw_level_others(storage: LevelStorage, tenants: list[str]) -> int:
    """Every sigil index entry decoded (plyvel iterator, `orjson.loads`) and every GC
    queue entry read (its member and score, from the index entry's key): what the
    rebuild reads besides the memory records."""
    loads, found = orjson.loads, 0
    for tenant in tenants:
        keys = TenantKeys(tenant)
        with storage.db.iterator(prefix=keys.sigils.encode()) as it:
            for _, raw in it:
                loads(raw)
                found += 1
        head = b"\xffz" + keys.gc_queue.encode() + b"\x00"  # level.py's index entries
        start, member = len(head), len(head) + 8
        with storage.db.iterator(prefix=head, include_value=False) as it:
            for key in it:
                key[member:].decode()
                unsortable(key, start)
                found += 1
    return found


def raw_redis_others(storage: RedisStorage, tenants: list[str]) -> int:
    """Every sigil index entry decoded (SCAN, MGET, `orjson.loads`) and every GC queue
    read (ZRANGE with scores, per tenant)."""
    client, found = storage.client, scan_and_decode(storage, "t:{*}:sigil:*")
    for tenant in tenants:
        for member, _ in client.zrange(TenantKeys(tenant).gc_queue, 0, -1, withscores=True):
            member.decode()
            found += 1
    return found


def raw_scan(storage: Storage) -> Callable[[list[str]], int]:
    if isinstance(storage, LevelStorage):
        return lambda tenants: raw_level(storage, tenants)
    if isinstance(storage, RedisStorage):
        return lambda tenants: raw_redis(storage, tenants)
    raise ValueError(f"no raw scan for {storage.name}")


def raw_others(storage: Storage) -> Callable[[list[str]], int]:
    """The raw read of the records the rebuild reads besides the memory records."""
    if isinstance(storage, LevelStorage):
        return lambda tenants: raw_level_others(storage, tenants)
    if isinstance(storage, RedisStorage):
        return lambda tenants: raw_redis_others(storage, tenants)
    raise ValueError(f"no raw scan for {storage.name}")


def cpu_clock(storage: Storage) -> Callable[[], float]:
    """CPU seconds spent so far by this process and, on Redis, by the server: on a
    machine shared with other jobs, the work done, which waiting for a core does not
    inflate as it inflates the wall clock."""
    if isinstance(storage, RedisStorage):
        client = storage.client

        def with_server() -> float:
            info = client.info("cpu")
            return time.process_time() + float(info["used_cpu_user"]) \
                + float(info["used_cpu_sys"])
        return with_server
    return time.process_time


def timed(run: Callable[[], object], cpu: Callable[[], float]) -> tuple[float, float]:
    """Wall and CPU seconds of `run()`."""
    started, cpu_started = time.perf_counter(), cpu()
    run()
    return time.perf_counter() - started, cpu() - cpu_started


def measure(backend: str, url: str, nodes: int, rounds: int) -> None:
    tenants = tenant_names(nodes)
    with open_backend(backend, url) as storage:
        load_s = load(storage, nodes)
        if isinstance(storage, LevelStorage):
            # The load leaves LevelDB compacting in a thread of this process, whose CPU
            # would count against whichever of the runs it overlaps: done first.
            storage.db.compact_range()
        raw, others = raw_scan(storage), raw_others(storage)
        print(f"{backend:<6} {nodes:>9,} nodes in {len(tenants)} tenants "
              f"[loaded in {load_s:.0f} s]", flush=True)

        def rebuild() -> None:
            report = engine_over(storage, ttl_s=LOCK_TTL_S).rebuild_stats()
            assert report.clean, report.to_json()
            assert report.total_nodes == nodes

        def scan() -> None:
            assert raw(tenants) == nodes

        def scan_others() -> None:
            assert others(tenants) > nodes  # a sigil entry per node, and the queue

        cpu = cpu_clock(storage)
        runs = {"rebuild": rebuild, "raw": scan, "others": scan_others}
        ratios: dict[str, list[float]] = {"raw": [], "all": []}
        cpu_ratios: dict[str, list[float]] = {"raw": [], "all": []}
        orders = cycle([("rebuild", "raw", "others"), ("raw", "others", "rebuild"),
                        ("others", "rebuild", "raw")])
        for round_, order in zip(range(rounds), orders, strict=False):
            # Each first in turns, so none always runs on a warmer cache.
            took = {name: timed(runs[name], cpu) for name in order}
            (rebuild_s, rebuild_cpu), (raw_s, raw_cpu) = took["rebuild"], took["raw"]
            all_s, all_cpu = (raw_s + took["others"][0], raw_cpu + took["others"][1])
            for name, wall, cpu_s in (("raw", raw_s, raw_cpu), ("all", all_s, all_cpu)):
                ratios[name].append(wall / rebuild_s)
                cpu_ratios[name].append(cpu_s / rebuild_cpu)
            print(f"  round {round_ + 1}: rebuild {rebuild_s:6.2f} s "
                  f"({nodes / rebuild_s:>9,.0f} nodes/s)   raw {raw_s:6.2f} s "
                  f"({nodes / raw_s:>9,.0f} nodes/s)   rebuild/raw {ratios['raw'][-1]:.2f}"
                  f"   CPU: rebuild {rebuild_cpu:6.2f} s, raw {raw_cpu:6.2f} s, "
                  f"rebuild/raw {cpu_ratios['raw'][-1]:.2f}   all records: raw "
                  f"{all_s:6.2f} s, CPU {all_cpu:6.2f} s, rebuild/raw "
                  f"{ratios['all'][-1]:.2f}, by CPU {cpu_ratios['all'][-1]:.2f}", flush=True)
        for name, label in (("raw", "rebuild/raw (nodes/s)"),
                            ("all", "rebuild/raw of all records it reads")):
            wall, by_cpu = ratios[name], cpu_ratios[name]
            print(f"  {label} median {median(wall):.2f} "
                  f"(spread {min(wall):.2f}-{max(wall):.2f}, {rounds} rounds); by CPU "
                  f"median {median(by_cpu):.2f} "
                  f"(spread {min(by_cpu):.2f}-{max(by_cpu):.2f})", flush=True)
        for tenant in tenants:
            storage.set(TenantKeys(tenant).memory_count, 0)
        started = time.perf_counter()
        repaired = engine_over(storage, ttl_s=LOCK_TTL_S).rebuild_stats()
        repair_s = time.perf_counter() - started
        assert len(repaired.corrected_counters) == len(tenants)
        print(f"  with {len(tenants)} repairs: rebuild {repair_s:6.2f} s "
              f"({nodes / repair_s:,.0f} nodes/s)", flush=True)


def main() -> None:
    parser = backend_arguments(__doc__, ("level", "redis"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with redis_server() as server:
        for nodes in args.sizes:
            for backend in args.backends:
                measure(backend, server.url, nodes, args.rounds)


if __name__ == "__main__":
    main()
