"""The storage contract every backend fulfils, and the writes it applies atomically.

Backends see bytes only: this base class checks keys and encodes values through the
store's codec (`codec.Codec`: JSON, and sealed memory records when a key is
configured), so every backend refuses the same bad input with the same error before
touching its store, and none of them ever holds a memory record in the clear when the
store seals. Counters share the key space with values; a counter key holds a JSON
integer (never sealed: Redis adds to it in place).

The ordered index (`index_*`) is the GC priority queue: a Redis sorted set, an ordered
LevelDB range, an in-memory sorted list. Members come out lowest score first.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import orjson

from spiral_tasks.errors import CorruptRecord
from spiral_tasks.frozen import quick_init
from spiral_tasks.storage import codec
from spiral_tasks.storage.codec import PLAIN, Codec

MAX_KEY_BYTES = 1024
#: How many records a batch of `read_batches` holds, at most: enough that a batch's
#: steps cost little per record, few enough that its decoded records stay in the CPU's
#: cache while they are read (a thousand cost more per record than a record at a time).
READ_BATCH = 64


@quick_init
@dataclass(frozen=True)
class Put:
    key: str
    value: Any


@quick_init
@dataclass(frozen=True)
class CheckedPut(Put):
    """A `Put` of a value checked where it was built: a record the engine makes from
    fields it validated (a memory from a validated request, a spiral from its own
    arithmetic or from a record read strictly), which comes back equal from JSON by
    construction. It is encoded once, without the round trip a `Put`'s value gets
    (`Codec.encode_checked`). A value that came from outside (an argument, a backup,
    a caller's dict) is never one: whoever builds a `CheckedPut` answers for it."""


@quick_init
@dataclass(frozen=True)
class Delete:
    key: str


@quick_init
@dataclass(frozen=True)
class Increment:
    key: str
    delta: int


@quick_init
@dataclass(frozen=True)
class IndexPut:
    index: str
    member: str
    score: float


@quick_init
@dataclass(frozen=True)
class IndexRemove:
    index: str
    member: str


@quick_init
@dataclass(frozen=True)
class Publish:
    """An event sent with the batch (Redis pub/sub, after the batch's writes, in the same
    atomic step); backends without pub/sub drop it."""

    channel: str
    message: str


@dataclass(frozen=True)
class Unreadable:
    """What a tolerant read (`read_many`, `read_scan`, a fence's reads) gives for a
    stored value that does not decode: the key, why, and the bytes as stored, so a
    rebuild can quarantine them whole. Strict reads raise `CorruptRecord` instead."""

    key: str
    reason: str
    raw: bytes

    def error(self) -> CorruptRecord:
        return CorruptRecord(self.key, self.reason)


def decode_or_unreadable(key: str, raw: bytes, values: Codec = PLAIN) -> Any:
    """The value of `raw`, stored at `key` (opened by `values`, the store's codec), or
    `Unreadable` if its bytes are no value. A codec's configuration fault (a sealed
    record under a key this process lacks: `SealBroken`) is not the record's, and
    propagates."""
    try:
        return values.decode(key, raw)
    except codec.UnreadableValue as exc:
        return Unreadable(key, str(exc)[:200], raw)


def _read_one(key: str, raw: bytes, values: Codec) -> Any:
    """`decode_or_unreadable` with the plain codec, the JSON read straight (see
    `Storage.read_batches`)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return decode_or_unreadable(key, raw, values)


def decoded(key: str, raw: bytes, values: Codec = PLAIN) -> Any:
    """The value of `raw`, stored at `key`; `CorruptRecord` naming the key if its bytes
    are no value."""
    value = decode_or_unreadable(key, raw, values)
    if isinstance(value, Unreadable):
        raise value.error()
    return value


@quick_init
@dataclass(frozen=True)
class LogAppend:
    """An entry added at the end of an append-only log (a Redis stream, a LevelDB key
    range): the audit log. `seq` orders the entries of one log (1, 2, ...)."""

    log: str
    seq: int
    value: Any


@quick_init
@dataclass(frozen=True)
class CheckedLogAppend(LogAppend):
    """A `LogAppend` of an entry checked where it was built (see `CheckedPut`)."""


@quick_init
@dataclass(frozen=True)
class LogTrim:
    """Remove a log's entries up to and including the one at `through` (a position
    `log_read` returned): retention, written with the checkpoint that replaces them."""

    log: str
    through: str


Write = Put | Delete | Increment | IndexPut | IndexRemove | Publish | LogAppend | LogTrim


@quick_init
@dataclass(frozen=True)
class EncodedPut:
    """A `Put` whose value passed the codec: what backends receive."""

    key: str
    raw: bytes


@quick_init
@dataclass(frozen=True)
class EncodedLogAppend:
    """A `LogAppend` whose value passed the codec."""

    log: str
    seq: int
    raw: bytes


EncodedWrite = (EncodedPut | Delete | Increment | IndexPut | IndexRemove | Publish
                | EncodedLogAppend | LogTrim)


def check_key(key: Any, argument: str = "key") -> str:
    # ASCII (nearly every key the engine builds): its length is its size in bytes and
    # it holds no surrogate, so one C call settles it.
    if type(key) is str and key.isascii() and 0 < len(key) <= MAX_KEY_BYTES:
        return key
    if not isinstance(key, str):
        raise TypeError(f"{argument} must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError(f"{argument} must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{argument} is not valid Unicode (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise ValueError(f"{argument} is {size} bytes; the limit is {MAX_KEY_BYTES}")
    return key


def check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    return prefix if prefix == "" else check_key(prefix, "prefix")


def _check_log_trim(write: LogTrim, values: Codec) -> EncodedWrite:
    check_key(write.log, "log")
    check_key(write.through, "through")
    return write


def _encode_log_append(write: LogAppend, values: Codec) -> EncodedWrite:
    check_key(write.log, "log")
    seq = write.seq
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq < 2**63:
        raise ValueError(f"seq must be a positive int, got {seq!r}")
    # Audit entries name operations and ids, never a memory's content: not sealed.
    raw = codec.encode_checked(write.value) if type(write) is CheckedLogAppend \
        else codec.encode(write.value)
    return EncodedLogAppend(write.log, seq, raw)


def _encode_put(write: Put, values: Codec) -> EncodedWrite:
    return EncodedPut(check_key(write.key), values.encode(write.key, write.value))


def _encode_checked_put(write: CheckedPut, values: Codec) -> EncodedWrite:
    return EncodedPut(check_key(write.key), values.encode_checked(write.key, write.value))


def _check_delete(write: Delete, values: Codec) -> EncodedWrite:
    check_key(write.key)
    return write


#: The largest step of a counter: 18 digits, so a counter and a step add up inside the
#: 64 bits Redis counts in.
MAX_DELTA = 10**18 - 1


def _check_increment(write: Increment, values: Codec) -> EncodedWrite:
    check_key(write.key)
    delta = write.delta
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise TypeError(f"delta must be an int, got {type(delta).__name__}")
    if not -MAX_DELTA <= delta <= MAX_DELTA:
        # Redis adds 64-bit integers only, and refuses the batch (`writes.lua`) past this.
        raise ValueError(f"delta {delta} is out of range (at most {MAX_DELTA} either way)")
    return write


def _check_index_put(write: IndexPut, values: Codec) -> EncodedWrite:
    check_key(write.index, "index")
    check_key(write.member, "member")
    score = write.score
    if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
        raise ValueError(f"score must be a number, got {score!r}")
    return write


def _check_index_remove(write: IndexRemove, values: Codec) -> EncodedWrite:
    check_key(write.index, "index")
    check_key(write.member, "member")
    return write


def _check_publish(write: Publish, values: Codec) -> EncodedWrite:
    check_key(write.channel, "channel")
    if not isinstance(write.message, str):
        raise TypeError(f"message must be a str, got {type(write.message).__name__}")
    return write


#: How each kind of write is checked and encoded, found by its class (a subclass of
#: one of these by its nearest base): one dict lookup per write.
_ENCODERS: dict[type, Callable[[Any, Codec], EncodedWrite]] = {
    Put: _encode_put,
    CheckedPut: _encode_checked_put,
    Delete: _check_delete,
    Increment: _check_increment,
    IndexPut: _check_index_put,
    IndexRemove: _check_index_remove,
    Publish: _check_publish,
    LogAppend: _encode_log_append,
    CheckedLogAppend: _encode_log_append,
    LogTrim: _check_log_trim,
}


def _encoder_of(write: Write) -> Callable[[Any, Codec], EncodedWrite]:
    """The encoder of a write whose class is not in `_ENCODERS` (a subclass)."""
    encoder = next((_ENCODERS[c] for c in type(write).__mro__ if c in _ENCODERS), None)
    if encoder is None:
        raise TypeError(f"not a storage write: {write!r}")
    return encoder


def _encode_write(write: Write, values: Codec) -> EncodedWrite:
    return (_ENCODERS.get(type(write)) or _encoder_of(write))(write, values)


class Storage(ABC):
    """A key-value store with counters, atomic batches and one kind of ordered index."""

    name: str = "storage"
    #: Whether `Publish` writes reach anyone (pub/sub): a store without it drops them,
    #: so the engine need not make them.
    publishes: bool = False
    #: How values become bytes here: plain JSON unless a key is configured (see
    #: `security.atrest.seal_storage`, which replaces it when the store is opened).
    codec: Codec = PLAIN

    # --- what a backend implements -------------------------------------------------
    @abstractmethod
    def init(self) -> None:
        """Open connections or files; calling it twice is harmless."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def _get(self, key: str) -> bytes | None:
        return self._get_many([key])[0]

    @abstractmethod
    def _keys(self, prefix: str) -> list[str]: ...

    @abstractmethod
    def _scan(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...

    @abstractmethod
    def _incr(self, key: str, delta: int) -> int: ...

    @abstractmethod
    def _apply(self, writes: Sequence[EncodedWrite]) -> int | None:
        """Apply all writes as one atomic unit, in order; return the value the last
        `Increment` left (None if there was none)."""

    @abstractmethod
    def _set_if_absent_raw(self, key: str, raw: bytes) -> bytes:
        """Store `raw` at `key` unless the key exists, atomically; return what the key
        holds afterwards."""

    @abstractmethod
    def _index_range(self, index: str, limit: int | None) -> list[tuple[str, float]]: ...

    @abstractmethod
    def _index_size(self, index: str) -> int: ...

    @abstractmethod
    def _log_read(self, log: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Up to `limit` entries of `log` after position `after` (None: from the
        start), oldest first, with their positions."""

    # --- the contract callers use ---------------------------------------------------
    def get(self, key: str) -> Any:
        """The value at `key`, or None when there is none; `CorruptRecord` if its bytes
        do not decode."""
        raw = self._get(check_key(key))
        return None if raw is None else decoded(key, raw, self.codec)

    def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        """Like `get`, for many keys; the first that does not decode raises."""
        raws = self._get_many([check_key(k) for k in keys])
        return [None if raw is None else decoded(k, raw, self.codec)
                for k, raw in zip(keys, raws, strict=True)]

    def read_many(self, keys: Sequence[str]) -> list[Any | None]:
        """Like `get_many`, but a value that does not decode comes back as
        `Unreadable`, so one bad record does not hide the others."""
        raws = self._get_many([check_key(k) for k in keys])
        return [None if raw is None else decode_or_unreadable(k, raw, self.codec)
                for k, raw in zip(keys, raws, strict=True)]

    def set(self, key: str, value: Any) -> None:
        self._apply([EncodedPut(check_key(key), self.codec.encode(key, value))])

    def set_if_absent(self, key: str, value: Any) -> Any:
        """Store `value` unless `key` holds something; return the value that won.

        Many processes creating the same thing at once (a generated secret) each get
        the first one written, never their own losing copy.
        """
        raw = self._set_if_absent_raw(check_key(key), self.codec.encode(key, value))
        return decoded(key, raw, self.codec)

    def delete(self, key: str) -> None:
        self.apply([Delete(key)])

    def keys(self, prefix: str = "") -> list[str]:
        return self._keys(check_prefix(prefix))

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """Every (key, value) under `prefix`, streamed; `CorruptRecord` at the first
        value that does not decode."""
        for key, raw in self._scan(check_prefix(prefix)):
            yield key, decoded(key, raw, self.codec)

    def read_scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """Like `scan`, but a value that does not decode comes as `Unreadable` and the
        scan goes on: the rebuild reads storage so, to quarantine what is bad."""
        for batch in self.read_batches(prefix):
            yield from batch

    def read_batches(self, prefix: str,
                     rows: Callable[[list[str], list[bytes]], list[Any] | None] | None = None,
                     ) -> Iterator[list[tuple[str, Any]]]:
        """`read_scan`, a batch of (key, value) at a time, in the same order: for a
        rebuild, which reads every node of a tenant, and to which a generator step per
        record and a decode call per record cost more than a batch's.

        `rows`, given, reads a batch of plain JSON (the keys and their bytes) its own
        way first: a value for each record (never a list, dict, str, number or
        `Unreadable`, so a caller tells them from decoded JSON), or None, and the batch
        is then read as without it. The rebuild decodes and checks its nodes so, in
        one step per batch. Sealed values never go to `rows`."""
        values = self.codec
        if type(values) is not Codec:  # a sealing codec: every value through it
            for keys, raws in self._scan_batches(check_prefix(prefix)):
                yield [(key, decode_or_unreadable(key, raw, values))
                       for key, raw in zip(keys, raws, strict=True)]
            return
        # The plain codec reads JSON, and refuses a sealed value (its first byte, LEAD,
        # starts no JSON, so orjson refuses it too). Here a batch of JSON is read
        # straight, in one pass of orjson; a batch holding anything else (a sealed value,
        # broken bytes) is read again record by record, the JSON as before and the rest
        # through the codec, which says what it is.
        loads, size = orjson.loads, READ_BATCH
        for keys, raws in self._scan_batches(check_prefix(prefix)):
            for start in range(0, len(keys), size):
                some = raws[start:start + size]
                if rows is not None:
                    own = rows(keys[start:start + size], some)
                    if own is not None:
                        yield list(zip(keys[start:start + size], own, strict=True))
                        continue
                try:
                    found = list(map(loads, some))
                except orjson.JSONDecodeError:
                    found = [_read_one(key, raw, values)
                             for key, raw in zip(keys[start:start + size], some, strict=True)]
                yield list(zip(keys[start:start + size], found, strict=True))

    def _scan_batches(self, prefix: str) -> Iterator[tuple[list[str], list[bytes]]]:
        """`_scan`, a batch of keys and their bytes at a time, in its order. Backends
        that read in batches anyway give theirs."""
        found = self._scan(prefix)
        while batch := list(islice(found, READ_BATCH)):
            keys, raws = zip(*batch, strict=True)
            yield list(keys), list(raws)

    def scan_stored(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        """Every (key, bytes as stored) under `prefix`, unopened: for the key rotation
        (which key sealed each value) and for tests that look at what a backend holds."""
        return self._scan(check_prefix(prefix))

    def incr(self, key: str, delta: int = 1) -> int:
        """Atomically add `delta` to the integer at `key` (missing counts as 0)."""
        _encode_write(Increment(key, delta), self.codec)
        return self._incr(key, delta)

    def apply(self, writes: Sequence[Write]) -> int | None:
        """Write everything or nothing; bad input is refused before any write.

        Returns the value the batch's last `Increment` left, so a caller can count
        (e.g. "every 100th store") without another round trip.
        """
        encoded = prepare(writes, self.codec)
        return self._apply(encoded) if encoded else None

    def index_range(self, index: str, limit: int | None = None) -> list[tuple[str, float]]:
        """Members of `index` with their scores, lowest score first."""
        check_key(index, "index")
        if limit is not None and limit <= 0:
            return []
        return self._index_range(index, limit)

    def index_size(self, index: str) -> int:
        return self._index_size(check_key(index, "index"))

    def log_read(self, log: str, after: str | None = None,
                 limit: int = 1000) -> list[tuple[str, Any]]:
        """Entries of an append-only log after position `after`, oldest first, each
        with its position (opaque: pass the last one back to read on)."""
        check_key(log, "log")
        if after is not None:
            check_key(after, "after")
        return [(position, codec.decode(raw))
                for position, raw in self._log_read(log, after, max(1, limit))]

    def __enter__(self) -> Storage:
        self.init()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prepare(writes: Sequence[Write], values: Codec) -> list[EncodedWrite]:
    """Check and encode a batch with a store's codec: what every backend (and the
    fenced commit) sends."""
    encoders = _ENCODERS
    return [(encoders.get(type(w)) or _encoder_of(w))(w, values) for w in writes]


class _Unusual(Exception):
    """A write `stage_writes`'s one pass leaves to the two steps (a subclass)."""


def stage_writes(
    writes: Sequence[Write], values: Codec, read: Callable[[str], bytes | None]
) -> tuple[dict[str, bytes | None], int | None, list[EncodedWrite]]:
    """`stage_values(prepare(writes, values), read)`, in one pass over the batch: the
    same checks and encodings, without an encoded copy of each put built only to be
    taken apart again (memory and LevelDB stage every batch so, under their lock).

    Whenever the one pass raises, or meets a write whose class is not one of the
    storage writes exactly (a subclass), the two steps run instead: so a batch with a
    bad write and a bad counter raises what they raise, in their order (bad input
    first). Nothing is applied either way until the caller applies the result.
    """
    try:
        return _stage_one_pass(writes, values, read)
    except Exception:  # the two steps say what is wrong (or that nothing was)
        return stage_values(prepare(writes, values), read)


def _stage_one_pass(  # noqa: PLR0912 - one branch per kind of write, in one loop
    writes: Sequence[Write], values: Codec, read: Callable[[str], bytes | None]
) -> tuple[dict[str, bytes | None], int | None, list[EncodedWrite]]:
    staged: dict[str, bytes | None] = {}
    last: int | None = None
    rest: list[EncodedWrite] = []
    encoders = _ENCODERS
    # The plain codec itself (not a subclass, which may wrap, as sealing does): its
    # `encode_checked` is `orjson.dumps` and its `encode` the module's, around an
    # identity `wrap`, so they are called straight (two calls fewer per put).
    plain = type(values) is Codec
    dumps = orjson.dumps
    write: Any  # told apart by its exact class below
    for write in writes:
        kind = type(write)
        if kind is CheckedPut or kind is Put:
            key = write.key
            # `check_key`'s own first test, which nearly every key passes.
            if not (type(key) is str and key.isascii() and 0 < len(key) <= MAX_KEY_BYTES):
                check_key(key)
            if plain:
                staged[key] = dumps(write.value) if kind is CheckedPut \
                    else codec.encode(write.value)
            else:
                staged[key] = values.encode_checked(key, write.value) \
                    if kind is CheckedPut else values.encode(key, write.value)
        elif kind is Increment:
            key, delta = write.key, write.delta
            if not (type(key) is str and key.isascii() and 0 < len(key) <= MAX_KEY_BYTES) \
                    or type(delta) is not int or not -MAX_DELTA <= delta <= MAX_DELTA:
                _check_increment(write, values)
            current = staged[key] if key in staged else read(key)
            # `parse_counter` inline; a counter that is no integer raises here, and the
            # two steps then raise its `CorruptRecord`.
            last = (0 if current is None else int(current)) + delta
            if not (MIN_COUNTER <= last <= MAX_COUNTER
                    and MIN_COUNTER <= last - delta <= MAX_COUNTER):
                raise _Unusual  # the two steps raise what `add_to_counter` says
            staged[key] = str(last).encode()
        elif kind is Delete:
            _check_delete(write, values)
            staged[write.key] = None
        elif kind is IndexPut:  # `_check_index_put`'s checks, inline for the usual case
            index, member, score = write.index, write.member, write.score
            if not (type(index) is str and index.isascii() and 0 < len(index) <= MAX_KEY_BYTES
                    and type(member) is str and member.isascii()
                    and 0 < len(member) <= MAX_KEY_BYTES
                    and type(score) is float and not math.isnan(score)):
                _check_index_put(write, values)
            rest.append(write)
        elif kind is CheckedLogAppend:  # `_encode_log_append`'s, inline likewise
            log, seq = write.log, write.seq
            if not (type(log) is str and log.isascii() and 0 < len(log) <= MAX_KEY_BYTES
                    and type(seq) is int and 0 < seq < 2**63):
                raise _Unusual  # the two steps raise what is wrong
            rest.append(EncodedLogAppend(log, seq, dumps(write.value)))
        elif kind in encoders:
            rest.append(encoders[kind](write, values))  # indexes, events, logs
        else:
            raise _Unusual
    return staged, last, rest


def seq_position(seq: int) -> str:
    """The position of entry `seq` of a log kept as a key range (memory, LevelDB): 20
    digits, so text order is numeric order."""
    return f"{seq:020d}"


def parse_counter(key: str, raw: bytes | None) -> int:
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise CorruptRecord(key, "does not hold an integer counter") from None


#: The range of a counter: Redis's, which adds 64-bit integers only.
MIN_COUNTER, MAX_COUNTER = -(2**63), 2**63 - 1


def add_to_counter(key: str, raw: bytes | None, delta: int) -> int:
    """The counter `raw` plus `delta`; a counter or a sum outside 64 bits is refused by
    every backend (Redis's INCRBY fails there: `writes.lua` refuses the batch before
    it writes)."""
    current = parse_counter(key, raw)
    if not MIN_COUNTER <= current <= MAX_COUNTER:  # Redis reads no such counter
        raise CorruptRecord(key, "does not hold an integer counter (past 64 bits)")
    value = current + delta
    if not MIN_COUNTER <= value <= MAX_COUNTER:
        raise ValueError(f"counter {key} would leave 64 bits ({value})")
    return value


def stage_values(
    writes: Sequence[EncodedWrite], read: Callable[[str], bytes | None]
) -> tuple[dict[str, bytes | None], int | None, list[EncodedWrite]]:
    """The final bytes of every key a batch touches (None: deleted), computed before
    anything is written, so a bad counter aborts the batch with nothing applied. Also
    returns the value the last increment leaves, and the writes this does not stage
    (indexes, logs, events), in order: the caller applies those without going over the
    whole batch again.

    For backends without native transactions (memory, LevelDB); the caller holds its
    write lock and applies the result in one step.
    """
    staged: dict[str, bytes | None] = {}
    last: int | None = None
    rest: list[EncodedWrite] = []
    for write in writes:  # isinstance, not `match`: a class pattern costs more per write
        if isinstance(write, EncodedPut):
            staged[write.key] = write.raw
        elif isinstance(write, Increment):
            key = write.key
            current = staged[key] if key in staged else read(key)
            last = add_to_counter(key, current, write.delta)
            staged[key] = str(last).encode()
        elif isinstance(write, Delete):
            staged[write.key] = None
        else:
            rest.append(write)
    return staged, last, rest
