"""Redis storage (redis-py): shared by every worker, counters kept with INCRBY.

Every batch runs in one Lua script (`lua/apply.lua`), so it is atomic and checks its
counters before writing anything. The coordinator's fenced commit runs the same write
code (`lua/writes.lua`) behind its lock check, with arguments built by `write_args`.

Listing by prefix must not cost a walk over the whole key space per tenant (SCAN MATCH
visits every key, so a rebuild of N tenants would be quadratic). So the scripts also
keep a *directory* of key names: a sorted set per Redis Cluster hash tag (see
`keys.directory_of`), in the tag's own slot. A prefix that contains a complete hash
tag is answered from that directory with ZRANGEBYLEX, in order, like a LevelDB range.
Any other prefix falls back to SCAN (never KEYS, which would block the server), asking
for string keys only, so sorted sets (directories, GC queues) stay out of `keys()` and
`scan()`. Keys written behind the adapter's back are seen by SCAN but not by a
directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
from redis.commands.core import Script

from spiral_tasks.config.redis_urls import parse_redis_url, shown_url
from spiral_tasks.errors import CorruptRecord, StorageUnavailable
from spiral_tasks.keys import directory_of, hash_tag
from spiral_tasks.storage import lua
from spiral_tasks.storage.base import (
    Delete,
    EncodedLogAppend,
    EncodedPut,
    EncodedWrite,
    Increment,
    IndexPut,
    IndexRemove,
    LogTrim,
    Publish,
    Storage,
)

#: Keys listed per directory page (ZRANGEBYLEX), and so per MGET, and SCAN's COUNT.
#: A tenant under the default limits holds at most 2,618 memories (`Limits`), so one
#: page holds all of its nodes, and another all of its sigil index: a rebuild reads
#: each in one listing and one MGET, not three of each (0-12% less CPU, client and
#: server, per rebuild than at 1,000: `benchmarks.redis_pages`). An MGET of a full page
#: of memory records is about 2 MB, answered in a few milliseconds.
SCAN_COUNT = 4096
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def match_prefix(prefix: str) -> str:
    """A SCAN MATCH pattern for keys starting with `prefix`, taken literally."""
    return prefix.translate(_GLOB_SPECIAL) + "*"


def write_args(writes: Sequence[EncodedWrite],
               placeholder: str) -> tuple[list[str], list[bytes | str]]:
    """KEYS and ARGV for `lua/writes.lua`: two keys and three arguments per write.
    `placeholder` fills the key places of writes that have no key (a publish); it must
    be a key of the batch's hash slot, so a cluster routes the script correctly."""
    keys: list[str] = []
    argv: list[bytes | str] = []
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
                keys += [placeholder, placeholder]
                argv += ["P", channel, message]
            case EncodedLogAppend(log, _, raw):
                keys += [log, log]
                argv += ["A", raw, ""]
            case LogTrim(log, through):
                keys += [log, log]
                argv += ["T", through, ""]
    return keys, argv


def first_key(writes: Sequence[EncodedWrite]) -> str:
    """A key of the batch (a channel if it only publishes), for `write_args`."""
    match writes[0]:
        case Publish(channel, _):
            return channel
        case IndexPut(index, _, _) | IndexRemove(index, _):
            return index
        case EncodedLogAppend(log, _, _) | LogTrim(log, _):
            return log
        case EncodedPut(key, _) | Delete(key) | Increment(key, _):
            return key
    raise TypeError(f"not a storage write: {writes[0]!r}")


ErrorReply = Callable[[str], Exception]


def run_script(script: Script, keys: Sequence[str], argv: Sequence[Any],
               errors: dict[str, ErrorReply]) -> Any:
    """Run `script`; an error reply starting with one of `errors`' markers (e.g.
    "NOTINT ") becomes that exception with the rest of the reply as its message."""
    try:
        return script(keys=keys, args=argv)
    except redis.ResponseError as exc:
        message = str(exc)
        for marker, error in errors.items():
            if marker in message:
                raise error(message.split(marker, 1)[-1]) from exc
        raise


def _not_a_counter(message: str) -> CorruptRecord:
    """`NOTINT <key> does not hold an integer counter`: the counter is corrupt."""
    key, _, reason = message.partition(" does not hold")
    return CorruptRecord(key, "does not hold" + reason if reason else message)


def connect(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for `url`, its TLS parameters (`rediss://...?ssl_ca_certs=...`)
    read as the broker, the results and beat read them (`spiral_tasks.config.redis_urls`),
    so storage, locks, health checks and Celery connect alike. `options` add client
    options (timeouts). Raises `ValueError` for a URL the settings would refuse."""
    address = parse_redis_url(url)
    return redis.Redis.from_url(address.url, **address.client_options(), **options)


#: Error replies of the write script.
WRITE_ERRORS: dict[str, ErrorReply] = {"NOTINT ": _not_a_counter, "OVERFLOW ": ValueError}


class RedisStorage(Storage):
    name = "redis"
    publishes = True

    def __init__(self, url: str) -> None:
        self.url = url
        #: How messages name this store: the URL without its password.
        self.shown = shown_url(url)
        self._client: redis.Redis | None = None
        self._apply_script: Script | None = None
        self._set_if_absent_script: Script | None = None

    def init(self) -> None:
        if self._client is not None:
            return
        try:
            client = connect(self.url)
        except ValueError as exc:
            raise StorageUnavailable(f"Redis URL {self.shown}: {exc}") from exc
        try:
            client.ping()
        except redis.RedisError as exc:
            client.close()
            raise StorageUnavailable(f"cannot reach Redis at {self.shown}: {exc}") from exc
        self._client = client
        # register_script loads a script again if the server lost it (restart, flush).
        self._apply_script = client.register_script(lua.load("apply"))
        self._set_if_absent_script = client.register_script(lua.load("set_if_absent"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise StorageUnavailable(f"Redis storage at {self.shown} is not open: call init()")
        return self._client

    def script(self, source: str) -> Script:
        """A script bound to this storage's client (for the coordinator's scripts)."""
        return self.client.register_script(source)

    def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        # MGET, even for one key: it answers None for a key that is not a string
        # value (a GC index), where GET would raise WRONGTYPE.
        return self.client.mget(keys)  # type: ignore[return-value]

    def _keys(self, prefix: str) -> list[str]:
        return [k.decode() for batch in self._key_batches(prefix) for k in batch]

    def _scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        for keys, raws in self._scan_batches(prefix):
            yield from zip(keys, raws, strict=True)

    def _scan_batches(self, prefix: str) -> Iterator[tuple[list[str], list[bytes]]]:
        for batch in self._key_batches(prefix):
            raws: list[bytes | None] = self.client.mget(batch)  # type: ignore[assignment]
            if None in raws:  # deleted between listing and MGET
                kept = [(key, raw) for key, raw in zip(batch, raws, strict=True)
                        if raw is not None]
                yield [key.decode() for key, _ in kept], [raw for _, raw in kept]
            else:
                yield list(map(bytes.decode, batch)), raws  # type: ignore[misc]

    def _key_batches(self, prefix: str) -> Iterator[list[bytes]]:
        """Key names under `prefix`, a batch at a time: from the directory of the
        prefix's hash tag when it has a complete one, else by SCAN."""
        client = self.client
        if hash_tag(prefix) is not None:
            directory = directory_of(prefix)
            low = b"[" + prefix.encode()
            high = b"(" + prefix.encode() + b"\xff"  # no UTF-8 key holds byte 0xff
            while True:
                # Each page starts after the last name of the one before, not at an
                # offset, which Redis would walk from the start again (a tenant's
                # rebuild would be quadratic in its keys).
                batch: list[bytes] = client.zrangebylex(  # type: ignore[assignment]
                    directory, low, high, start=0, num=SCAN_COUNT)
                if batch:
                    yield batch
                if len(batch) < SCAN_COUNT:
                    return
                low = b"(" + batch[-1]
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
        last = self._apply([Increment(key, delta)])
        assert last is not None
        return last

    def _apply(self, writes: Sequence[EncodedWrite]) -> int | None:
        assert self._apply_script is not None, "storage not open"
        keys, argv = write_args(writes, first_key(writes))
        (last,) = run_script(self._apply_script, keys, argv, WRITE_ERRORS)
        return None if last is None else int(last)

    def _set_if_absent_raw(self, key: str, raw: bytes) -> bytes:
        assert self._set_if_absent_script is not None, "storage not open"
        won: bytes = self._set_if_absent_script(keys=[key, directory_of(key)], args=[raw])
        return won

    def _index_range(self, index: str, limit: int | None) -> list[tuple[str, float]]:
        end = -1 if limit is None else limit - 1
        # The reply as it comes: redis-py's `zrange(withscores=True)` turns each score
        # of a RESP3 reply (a float already) into text and back, which cost a rebuild
        # more than reading the whole queue. RESP3 gives [member, score] pairs, RESP2
        # member, score, member, ...
        found: list[Any] = self.client.execute_command(  # type: ignore[no-untyped-call]
            "ZRANGE", index, 0, end, "WITHSCORES")
        if found and type(found[0]) is list:
            return [(member.decode(), float(score)) for member, score in found]
        return [(member.decode(), float(score))
                for member, score in zip(found[::2], found[1::2], strict=True)]

    def _index_size(self, index: str) -> int:
        return int(self.client.zcard(index))

    def _log_read(self, log: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        start = "-" if after is None else "(" + after
        entries: list[tuple[bytes, dict[bytes, bytes]]]
        entries = self.client.xrange(log, start, "+", count=limit)  # type: ignore[assignment]
        return [(position.decode(), fields[b"e"]) for position, fields in entries]
