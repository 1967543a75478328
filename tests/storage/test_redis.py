"""What only the Redis backend has: per-hash-tag key directories, script reloads."""

from __future__ import annotations

import pytest
import redis

from spiral_tasks.errors import StorageUnavailable
from spiral_tasks.storage.base import Increment, Put
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.testing.redis_server import free_port


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


def test_a_storage_error_names_redis_without_its_password() -> None:
    """The message reaches logs, the commands' one line, and a failed task's result."""
    url = f"redis://spiral:s3cret-pw@127.0.0.1:{free_port()}/0"
    with pytest.raises(StorageUnavailable) as caught:
        RedisStorage(url).init()
    assert "cannot reach Redis at redis://spiral:***@127.0.0.1:" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(StorageUnavailable) as refused:
        RedisStorage("rediss://spiral:s3cret-pw@h/0?ssl_ca_certs=/nowhere").init()
    assert str(refused.value) == ("Redis URL rediss://spiral:***@h/0?ssl_ca_certs=/nowhere: "
                                  "ssl_ca_certs='/nowhere': no such file")
    with pytest.raises(StorageUnavailable, match=r"spiral:\*\*\*@127.0.0.1.* is not open"):
        _ = RedisStorage(url).client
