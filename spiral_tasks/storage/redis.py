"""Redis storage (redis-py): shared by every worker, counters kept with INCRBY.

Every write runs in one Lua script (`lua/apply.lua`), so a batch is atomic and checks
its counters before writing anything.

Listing by prefix must not cost a walk over the whole key space per tenant (SCAN MATCH
visits every key, so a rebuild of N tenants would be quadratic). So the script also
keeps a *directory* of key names: a sorted set per Redis Cluster hash tag
(`__dir__:{acme}` for every key containing `{acme}`, `__dir__` for untagged keys), in
the tag's own slot. A prefix that contains a complete hash tag is answered from that
directory with ZRANGEBYLEX, in order, like a LevelDB range. Any other prefix falls back
to SCAN (never KEYS, which would block the server), asking for string keys only, so
sorted sets (directories, GC queues) stay out of `keys()` and `scan()`. Keys written
behind the adapter's back are seen by SCAN but not by a directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import redis

from spiral_tasks.errors import LockLost, StaleGeneration, StorageUnavailable
from spiral_tasks.storage import lua
from spiral_tasks.storage.base import (
    Delete,
    EncodedPut,
    EncodedWrite,
    Increment,
    IndexPut,
    IndexRemove,
    Publish,
    Storage,
    Write,
    prepare,
)

SCAN_COUNT = 1000
DIRECTORY = "__dir__"
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def match_prefix(prefix: str) -> str:
    """A SCAN MATCH pattern for keys starting with `prefix`, taken literally."""
    return prefix.translate(_GLOB_SPECIAL) + "*"


def hash_tag(key: str) -> str | None:
    """The Redis Cluster hash tag of `key`: the text between the first `{` and the
    next `}`, if not empty."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1:end]


def directory_of(key: str) -> str:
    tag = hash_tag(key)
    return DIRECTORY if tag is None else f"{DIRECTORY}:{{{tag}}}"


@dataclass(frozen=True)
class FenceArgs:
    """What a fenced commit checks: the lock still holds `token`, and (if given) the
    generation is still `expected_generation`."""

    lock_key: str
    generation_key: str
    token: bytes
    expected_generation: int | None
    release: bool


@dataclass(frozen=True)
class Applied:
    last_increment: int | None
    generation: int | None


def _slot_key(write: EncodedWrite) -> str:
    """A key of the write's hash slot, to fill the KEYS places the script ignores."""
    match write:
        case Publish(channel, _):
            return channel
        case IndexPut(index, _, _) | IndexRemove(index, _):
            return index
        case EncodedPut(key, _) | Delete(key) | Increment(key, _):
            return key
    raise TypeError(f"not a storage write: {write!r}")


def _script_args(writes: Sequence[EncodedWrite],
                 fence: FenceArgs | None) -> tuple[list[str], list[bytes | str]]:
    if fence:
        keys: list[str] = [fence.lock_key, fence.generation_key]
    else:
        keys = [_slot_key(writes[0])] * 2  # the script ignores these two when unfenced
    argv: list[bytes | str] = (
        [fence.token, "" if fence.expected_generation is None
         else str(fence.expected_generation), "1" if fence.release else "0"]
        if fence else ["", "", "0"])
    for write in writes:
        match write:
            case EncodedPut(key, raw):
                keys += [key, directory_of(key)]
                argv += ["S", raw, ""]
            case Delete(key):
                keys += [key, directory_of(key)]
                argv += ["D", "", ""]
            case Increment(key, delta):
                keys += [key, directory_of(key)]
                argv += ["I", str(delta), ""]
            case IndexPut(index, member, score):
                keys += [index, index]
                argv += ["Z", repr(float(score)), member]
            case IndexRemove(index, member):
                keys += [index, index]
                argv += ["R", member, ""]
            case Publish(channel, message):
                keys += [keys[0], keys[0]]  # not keys: the script ignores them
                argv += ["P", channel, message]
    return keys, argv


class RedisStorage(Storage):
    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: redis.Redis | None = None
        self._apply_source = lua.load("apply")
        self._apply_sha = ""

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
        self._apply_sha = client.script_load(self._apply_source)

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
        return [k.decode() for batch in self._key_batches(prefix) for k in batch]

    def _scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        for batch in self._key_batches(prefix):
            raws: list[bytes | None] = self.client.mget(batch)  # type: ignore[assignment]
            for key, raw in zip(batch, raws, strict=True):
                if raw is not None:  # deleted between listing and MGET
                    yield key.decode(), raw

    def _key_batches(self, prefix: str) -> Iterator[list[bytes]]:
        """Key names under `prefix`, a batch at a time: from the directory of the
        prefix's hash tag when it has a complete one, else by SCAN."""
        client = self.client
        tag = hash_tag(prefix)
        if tag is not None:
            directory = f"{DIRECTORY}:{{{tag}}}"
            low = b"[" + prefix.encode()
            high = b"(" + prefix.encode() + b"\xff"  # no UTF-8 key holds byte 0xff
            offset = 0
            while True:
                batch: list[bytes] = client.zrangebylex(  # type: ignore[assignment]
                    directory, low, high, start=offset, num=SCAN_COUNT)
                if batch:
                    yield batch
                if len(batch) < SCAN_COUNT:
                    return
                offset += len(batch)
        cursor = 0
        while True:
            found: tuple[int, list[bytes]] = client.scan(  # type: ignore[assignment]
                cursor, match=match_prefix(prefix), count=SCAN_COUNT, _type="string")
            cursor, batch = found
            if batch:
                yield batch
            if cursor == 0:
                return

    def _incr(self, key: str, delta: int) -> int:
        last = self._run(_script_args([Increment(key, delta)], None)).last_increment
        assert last is not None
        return last

    def _apply(self, writes: Sequence[EncodedWrite]) -> int | None:
        return self._run(_script_args(writes, None)).last_increment

    def apply_fenced(self, writes: Sequence[Write], fence: FenceArgs) -> Applied:
        """Apply `writes` only while the lock named in `fence` still holds its token;
        bumps the generation (and releases the lock if asked) in the same step."""
        return self._run(_script_args(prepare(writes), fence))

    def _run(self, script_args: tuple[list[str], list[bytes | str]]) -> Applied:
        keys, argv = script_args
        client = self.client
        try:
            try:
                result = client.evalsha(self._apply_sha, len(keys), *keys, *argv)
            except redis.exceptions.NoScriptError:  # the server restarted or was flushed
                self._apply_sha = client.script_load(self._apply_source)
                result = client.evalsha(self._apply_sha, len(keys), *keys, *argv)
        except redis.ResponseError as exc:
            message = str(exc)
            for marker, error in (("NOTINT ", ValueError), ("LOCKLOST ", LockLost),
                                  ("STALE ", StaleGeneration)):
                if marker in message:
                    raise error(message.split(marker, 1)[-1]) from exc
            raise
        last, generation = result
        return Applied(None if last is None else int(last),
                       None if generation is None else int(generation))

    def _index_range(self, index: str, limit: int | None) -> list[tuple[str, float]]:
        end = -1 if limit is None else limit - 1
        entries: list[tuple[bytes, float]] = self.client.zrange(  # type: ignore[assignment]
            index, 0, end, withscores=True)
        return [(member.decode(), float(score)) for member, score in entries]

    def _index_size(self, index: str) -> int:
        return int(self.client.zcard(index))
