"""What only the Redis backend has: per-hash-tag key directories, script reloads."""

from __future__ import annotations

import redis

from spiral_tasks.storage.base import Increment, Put
from spiral_tasks.storage.redis import RedisStorage


def test_directories_follow_writes_and_stay_out_of_sight(redis_url: str) -> None:
    store = RedisStorage(redis_url)
    store.init()
    store.set("t:{a}:mem:1", {"x": 1})
    store.incr("t:{a}:memory_count", 2)
    store.delete("t:{a}:mem:1")
    raw = redis.Redis.from_url(redis_url)
    assert raw.zrange("__dir__:{a}", 0, -1) == [b"t:{a}:memory_count"]
    assert store.keys("") == ["t:{a}:memory_count"]
    assert store.get("__dir__:{a}") is None
    raw.close()
    store.close()


def test_a_server_that_lost_the_script_gets_it_again(redis_url: str) -> None:
    store = RedisStorage(redis_url)
    store.init()
    raw = redis.Redis.from_url(redis_url)
    raw.script_flush()
    store.apply([Put("k", 1), Increment("n", 2)])
    assert store.get_many(["k", "n"]) == [1, 2]
    raw.close()
    store.close()
