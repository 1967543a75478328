"""Redis storage (redis-py): shared by every worker, counters kept with INCRBY.

A batch runs as one Lua script (`lua/apply.lua`), so it is atomic and checks its
counters before writing anything. Keys are listed with SCAN, never KEYS, which would
block the server; SCAN asks for string keys only, so the GC index (a sorted set)
stays out of `keys()` and `scan()`, as it does on the other backends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import redis

from spiral_tasks.errors import StorageUnavailable
from spiral_tasks.storage import lua
from spiral_tasks.storage.base import (
    Delete,
    EncodedPut,
    EncodedWrite,
    Increment,
    IndexPut,
    IndexRemove,
    Storage,
)

SCAN_COUNT = 1000
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def match_prefix(prefix: str) -> str:
    """A SCAN MATCH pattern for keys starting with `prefix`, taken literally."""
    return prefix.translate(_GLOB_SPECIAL) + "*"


def _script_args(writes: Sequence[EncodedWrite]) -> tuple[list[str], list[bytes | str]]:
    keys: list[str] = []
    argv: list[bytes | str] = []
    for write in writes:
        match write:
            case EncodedPut(key, raw):
                keys.append(key)
                argv += ["S", raw, ""]
            case Delete(key):
                keys.append(key)
                argv += ["D", "", ""]
            case Increment(key, delta):
                keys.append(key)
                argv += ["I", str(delta), ""]
            case IndexPut(index, member, score):
                keys.append(index)
                argv += ["Z", repr(float(score)), member]
            case IndexRemove(index, member):
                keys.append(index)
                argv += ["R", member, ""]
    return keys, argv


class RedisStorage(Storage):
    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: redis.Redis | None = None
        self._apply_script: redis.commands.core.Script | None = None

    def init(self) -> None:
        if self._client is not None:
            return
        client = redis.Redis.from_url(self.url)
        try:
            client.ping()
        except redis.RedisError as exc:
            client.close()
            raise StorageUnavailable(f"cannot reach Redis at {self.url}: {exc}") from exc
        self._client = client
        self._apply_script = client.register_script(lua.load("apply"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise StorageUnavailable(f"Redis storage at {self.url} is not open: call init()")
        return self._client

    def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        # MGET, even for one key: it answers None for a key that is not a string
        # value (a GC index), where GET would raise WRONGTYPE.
        return self.client.mget(keys)  # type: ignore[return-value]

    def _keys(self, prefix: str) -> list[str]:
        return [k.decode() for k in self.client.scan_iter(
            match=match_prefix(prefix), count=SCAN_COUNT, _type="string")]

    def _scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        client = self.client
        pattern = match_prefix(prefix)
        cursor = 0
        while True:
            found: tuple[int, list[bytes]] = client.scan(  # type: ignore[assignment]
                cursor, match=pattern, count=SCAN_COUNT, _type="string")
            cursor, batch = found
            if batch:
                raws: list[bytes | None] = client.mget(batch)  # type: ignore[assignment]
                for key, raw in zip(batch, raws, strict=True):
                    if raw is not None:  # deleted between SCAN and MGET
                        yield key.decode(), raw
            if cursor == 0:
                return

    def _incr(self, key: str, delta: int) -> int:
        try:
            return int(self.client.incrby(key, delta))
        except redis.ResponseError as exc:
            raise ValueError(f"{key} does not hold an integer counter") from exc

    def _apply(self, writes: Sequence[EncodedWrite]) -> None:
        if len(writes) == 1 and isinstance(writes[0], EncodedPut):
            self.client.set(writes[0].key, writes[0].raw)
            return
        keys, argv = _script_args(writes)
        assert self._apply_script is not None
        try:
            self._apply_script(keys=keys, args=argv, client=self.client)
        except redis.ResponseError as exc:
            if "NOTINT" in str(exc):
                raise ValueError(str(exc).split("NOTINT ", 1)[-1]) from exc
            raise

    def _index_range(self, index: str, limit: int | None) -> list[tuple[str, float]]:
        end = -1 if limit is None else limit - 1
        entries: list[tuple[bytes, float]] = self.client.zrange(  # type: ignore[assignment]
            index, 0, end, withscores=True)
        return [(member.decode(), float(score)) for member, score in entries]

    def _index_size(self, index: str) -> int:
        return int(self.client.zcard(index))
