"""What only the Redis backend has: hash tags and per-tag key directories."""

from __future__ import annotations

import pytest
import redis

from spiral_tasks.storage.base import Increment, Put
from spiral_tasks.storage.redis import RedisStorage, directory_of, hash_tag


@pytest.mark.parametrize(("key", "tag"), [
    ("t:{acme}:mem:1", "acme"),
    ("{a}{b}", "a"),
    ("no tag", None),
    ("empty {} braces", None),
    ("open { only", None),
    ("x}{y}", "y"),
])
def test_hash_tag_follows_redis_cluster_rules(key: str, tag: str | None) -> None:
    assert hash_tag(key) == tag


def test_directory_lives_in_the_tag_slot() -> None:
    assert directory_of("t:{acme}:mem:1") == "__dir__:{acme}"
    assert directory_of("tenants:acme") == "__dir__"


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
