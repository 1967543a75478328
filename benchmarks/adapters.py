"""Adapter get/set throughput next to the raw client, in the same run.

    python3 -m uv run --frozen python -m benchmarks.adapters [--ops N]

For Redis the raw client is redis-py (SET/GET of the same bytes); for LevelDB it is
plyvel (put/get). The adapters also check keys and encode/decode JSON; "raw+json"
adds orjson to the raw client for the like-for-like comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import orjson
import plyvel
import redis

from benchmarks.common import open_backend, redis_server
from spiral_tasks.storage.base import Storage

VALUE = {"id": "m", "content": "x" * 200, "depth": "deep", "position": {"index": 3,
         "angle": 52.5, "radius": 1.4, "x": 0.8, "y": 1.1, "turn": 0},
         "associations": ["a", "b"], "strength": 0.5}
RAW = orjson.dumps(VALUE)


def rate(fn: Callable[[int], object], ops: int) -> float:
    started = time.perf_counter()
    for i in range(ops):
        fn(i)
    return ops / (time.perf_counter() - started)


def adapter_rates(storage: Storage, ops: int) -> tuple[float, float]:
    keys = [f"bench:{i}" for i in range(ops)]
    set_rate = rate(lambda i: storage.set(keys[i], VALUE), ops)
    get_rate = rate(lambda i: storage.get(keys[i]), ops)
    return set_rate, get_rate


def redis_raw(url: str, ops: int) -> dict[str, tuple[float, float]]:
    client = redis.Redis.from_url(url)
    client.flushall()
    keys = [f"raw:{i}" for i in range(ops)]
    raw = (rate(lambda i: client.set(keys[i], RAW), ops),
           rate(lambda i: client.get(keys[i]), ops))
    with_json = (rate(lambda i: client.set(keys[i], orjson.dumps(VALUE)), ops),
                 rate(lambda i: orjson.loads(client.get(keys[i])), ops))  # type: ignore[arg-type]
    client.close()
    return {"raw": raw, "raw+json": with_json}


def level_raw(path: str, ops: int) -> dict[str, tuple[float, float]]:
    db = plyvel.DB(path, create_if_missing=True)
    keys = [f"raw:{i}".encode() for i in range(ops)]
    raw = (rate(lambda i: db.put(keys[i], RAW), ops), rate(lambda i: db.get(keys[i]), ops))
    with_json = (rate(lambda i: db.put(keys[i], orjson.dumps(VALUE)), ops),
                 rate(lambda i: orjson.loads(db.get(keys[i])), ops))
    db.close()
    return {"raw": raw, "raw+json": with_json}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'backend':<8} {'client':<9} {'set ops/s':>12} {'get ops/s':>12} "
          f"{'set vs raw':>11} {'get vs raw':>11}")
    with redis_server() as server:
        for backend in ("memory", "level", "redis"):
            with open_backend(backend, server.url) as storage:
                mine = adapter_rates(storage, args.ops)
            refs: dict[str, tuple[float, float]] = {}
            if backend == "redis":
                refs = redis_raw(server.url, args.ops)
            elif backend == "level":
                with tempfile.TemporaryDirectory() as workdir:
                    refs = level_raw(workdir, args.ops)
            for name, (s, g) in refs.items():
                print(f"{backend:<8} {name:<9} {s:>12,.0f} {g:>12,.0f}")
            raw = refs.get("raw")
            ratio = (f"{mine[0] / raw[0]:>11.2f} {mine[1] / raw[1]:>11.2f}" if raw else "")
            print(f"{backend:<8} {'adapter':<9} {mine[0]:>12,.0f} {mine[1]:>12,.0f} {ratio}")


if __name__ == "__main__":
    main()
