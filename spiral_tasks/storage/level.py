"""LevelDB storage (plyvel): the embedded default, persistent, one process at a time.

Batches are LevelDB WriteBatches, applied atomically. Counter updates read then write,
so batches and increments are serialized by a process-local lock; LevelDB's own LOCK
file keeps other processes out.

The GC index lives under keys starting with byte 0xff, which no UTF-8 key can start
with, so it never shows in `keys()`:
    0xff 'z' <index> 0x00 <sortable score, 8 bytes> <member>   ordered entries
    0xff 'm' <index> 0x00 <member>  ->  <sortable score>        member -> entry

Append-only logs (the audit log) are a key range there too, in entry order:
    0xff 'l' <log> 0x00 <seq, 8 bytes big-endian>  ->  entry
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator, Sequence
from itertools import islice, repeat
from operator import getitem
from pathlib import Path
from typing import Any, cast

import plyvel

from spiral_tasks.errors import StorageHeld, StorageUnavailable
from spiral_tasks.storage.base import (
    READ_BATCH,
    EncodedLogAppend,
    EncodedPut,
    EncodedWrite,
    IndexPut,
    IndexRemove,
    LogTrim,
    Storage,
    Write,
    add_to_counter,
    seq_position,
    stage_values,
    stage_writes,
)

_INDEX_ENTRY = b"\xffz"
_INDEX_MEMBER = b"\xffm"
_LOG_ENTRY = b"\xffl"
_SIGN = 1 << 63
#: LevelDB's memtable (`write_buffer_size`, 4 MiB by default, RocksDB's 64 MiB): each
#: time one fills, a call into the database (a write, a read, an iterator) could block
#: for a while, the thread asleep rather than waiting for a core, about 0.25 ms per MiB
#: of buffer. Measured by writing 300 MiB in batches of 50 records with reads between
#: them: 4 MiB gave 11-13 stalls over 2 ms per 100 MiB written, of 6-7 ms; 64 MiB gave
#: 1.3-1.7, of 14-18 ms (128 MiB: 0.7, of 30 ms). A GC run whose budget is 5 or 25 ms
#: breaks it by a stall of either size, so fewer stalls is what keeps its pauses in
#: budget (`benchmarks/gc_pause.py`: 4-17 runs over budget + 2 ms in a round at 4 MiB,
#: none at 64). The price: up to twice the buffer in memory, and up to 64 MiB of log
#: to replay when a database that was not closed opens again.
WRITE_BUFFER_BYTES = 64 << 20
_ALL = (1 << 64) - 1


def sortable(score: float) -> bytes:
    """8 bytes whose byte order is the numeric order of `score`."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", score))
    bits = bits ^ _ALL if bits & _SIGN else bits | _SIGN
    return struct.pack(">Q", bits)


_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")


def unsortable(raw: bytes, offset: int = 0) -> float:
    """The score `sortable` wrote at `offset` of `raw`."""
    (bits,) = _U64.unpack_from(raw, offset)
    bits = bits ^ _SIGN if bits & _SIGN else bits ^ _ALL
    value: float = _F64.unpack(_U64.pack(bits))[0]
    return value


_SIGN_BYTES = _U64.pack(_SIGN)


def _slices(entries: list[bytes], start: int, stop: int | None) -> Iterator[bytes]:
    """`entry[start:stop]` of each entry, by C calls alone (no Python step per entry)."""
    return cast(Iterator[bytes], map(getitem, entries, repeat(slice(start, stop))))


def _scores(entries: list[bytes], start: int) -> Sequence[float]:
    """The score `sortable` wrote at `start` of each of `entries`, all at once when no
    score is negative (a GC deadline never is): `sortable` then only set each one's
    sign bit, so the scores are the 8-byte fields, side by side in one integer, with
    those bits cleared. Else (a sign bit clear: a negative score) one at a time."""
    count = len(entries)
    fields = int.from_bytes(b"".join(_slices(entries, start, start + 8)), "big")
    signs = int.from_bytes(_SIGN_BYTES * count, "big")
    if fields & signs != signs:
        return [unsortable(entry, start) for entry in entries]
    scores: tuple[float, ...] = struct.unpack(f">{count}d",
                                              (fields ^ signs).to_bytes(8 * count, "big"))
    return scores


def _log_head(log: str) -> bytes:
    return _LOG_ENTRY + log.encode() + b"\x00"


def _plain(exc: Exception) -> str:
    """plyvel's errors carry LevelDB's message as bytes: show it as text."""
    message = exc.args[0] if exc.args else exc
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


class LevelStorage(Storage):
    name = "level"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: Any = None
        self._write_lock = threading.Lock()
        #: Per index (its entries' common head), a key no live entry sorts below: where
        #: a read of the index seeks to (see `_index_range`).
        self._floors: dict[bytes, bytes] = {}
        #: Per index, how many writes put entries into it: a read raises the floor only
        #: if none did while it ran. (An entry put between the floor and the first live
        #: entry does not lower the floor, yet a read that ran meanwhile may not have
        #: seen it: raised past it, the floor would hide it from every later read.)
        self._puts: dict[bytes, int] = {}
        self._floor_lock = threading.Lock()

    def init(self) -> None:
        if self._db is not None:
            return
        try:
            self._db = plyvel.DB(str(self.path), create_if_missing=True,
                                 write_buffer_size=WRITE_BUFFER_BYTES)
        except plyvel.IOError as exc:
            message = _plain(exc)
            # LevelDB's own words when another process holds the folder's LOCK file
            # ("lock .../LOCK: Resource temporarily unavailable"): a worker, usually.
            error = StorageHeld if "/LOCK:" in message else StorageUnavailable
            raise error(
                f"cannot open LevelDB at {self.path}: {message}. LevelDB admits one "
                "process at a time: stop the process that holds it, or send the work to "
                "it as a task (spiral-enqueue).") from exc

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        with self._floor_lock:
            # Closed, the database is another's to write (a second storage, a restore):
            # what this one remembered of its indexes holds no more.
            self._floors.clear()
            self._puts.clear()

    @property
    def db(self) -> Any:
        if self._db is None:
            raise StorageUnavailable(f"LevelDB at {self.path} is not open: call init()")
        return self._db

    def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        get = self.db.get
        return [get(k.encode()) for k in keys]

    def _get(self, key: str) -> bytes | None:
        raw: bytes | None = self.db.get(key.encode())
        return raw

    def _keys(self, prefix: str) -> list[str]:
        if prefix:
            it = self.db.iterator(prefix=prefix.encode(), include_value=False)
        else:
            it = self.db.iterator(stop=b"\xff", include_value=False)
        with it:
            return [k.decode() for k in it]

    def _records(self, prefix: str) -> Any:
        """A plyvel iterator over the records under `prefix`; everything without one:
        up to the indexes and logs (0xff...), which are not keys."""
        return self.db.iterator(prefix=prefix.encode()) if prefix else \
            self.db.iterator(stop=b"\xff")

    def _scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        with self._records(prefix) as it:
            for key, raw in it:
                yield key.decode(), raw

    def _scan_batches(self, prefix: str) -> Iterator[tuple[list[str], list[bytes]]]:
        # A batch taken from the iterator, split and its keys decoded in C: no Python
        # step per record (a rebuild reads every node of a tenant so).
        with self._records(prefix) as it:
            while batch := list(islice(it, READ_BATCH)):
                keys, raws = zip(*batch, strict=True)
                yield list(map(bytes.decode, keys)), list(raws)

    def _incr(self, key: str, delta: int) -> int:
        raw_key = key.encode()
        with self._write_lock:
            value = add_to_counter(key, self.db.get(raw_key), delta)
            self.db.put(raw_key, str(value).encode())
            return value

    def _set_if_absent_raw(self, key: str, raw: bytes) -> bytes:
        # The write lock serializes this process; LevelDB's LOCK file keeps others out.
        raw_key = key.encode()
        with self._write_lock:
            found: bytes | None = self.db.get(raw_key)
            if found is not None:
                return found
            self.db.put(raw_key, raw, sync=True)
            return raw

    def apply(self, writes: Sequence[Write]) -> int | None:
        """`Storage.apply`, a batch checked, encoded and staged in one pass
        (`stage_writes`); one write as before (a put is atomic by itself)."""
        if len(writes) < 2:
            return super().apply(writes)
        db = self.db
        with self._write_lock:
            return self._write(*stage_writes(writes, self.codec, lambda k: db.get(k.encode())))

    def _apply(self, writes: Sequence[EncodedWrite]) -> int | None:
        db = self.db
        with self._write_lock:
            if len(writes) == 1 and isinstance(writes[0], EncodedPut):
                # Atomic by itself, but under the lock all the same: a batch staged
                # meanwhile (an increment of the same key, read before this put) would
                # write its stale sum over it.
                db.put(writes[0].key.encode(), writes[0].raw)
                return None
            return self._write(*stage_values(writes, lambda k: db.get(k.encode())))

    def _write(self, staged: dict[str, bytes | None], last: int | None,
               rest: Sequence[EncodedWrite]) -> int | None:
        """Apply a staged batch in one LevelDB transaction (the caller holds the write
        lock); `last` is handed back."""
        db = self.db
        with db.write_batch(transaction=True) as batch:
            for key, raw in staged.items():
                if raw is None:
                    batch.delete(key.encode())
                else:
                    batch.put(key.encode(), raw)
            lowest = self._stage_index(batch, rest)
            self._stage_logs(batch, rest)
        # After the write, so a read that seeks from the floor lowered here finds
        # the entries it was lowered for.
        for head, entry in lowest.items():
            self._lower_floor(head, entry)
        return last

    def _stage_logs(self, batch: Any, writes: Sequence[EncodedWrite]) -> None:
        for write in writes:
            if isinstance(write, EncodedLogAppend):
                batch.put(_log_head(write.log) + struct.pack(">Q", write.seq), write.raw)
            elif isinstance(write, LogTrim):
                head = _log_head(write.log)
                stop = head + struct.pack(">Q", int(write.through) + 1)
                with self.db.iterator(start=head, stop=stop, include_value=False) as it:
                    for key in it:
                        batch.delete(key)

    def _log_read(self, log: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        head = _log_head(log)
        start = head if after is None else head + struct.pack(">Q", int(after) + 1)
        found: list[tuple[str, bytes]] = []
        with self.db.iterator(start=start, stop=head[:-1] + b"\x01") as it:
            for key, raw in it:
                if len(found) >= limit:
                    break
                (seq,) = struct.unpack(">Q", key[len(head):])
                found.append((seq_position(seq), raw))
        return found

    def _stage_index(self, batch: Any, writes: Sequence[EncodedWrite]) -> dict[bytes, bytes]:
        """Stage the index writes; per index written to, the lowest entry put."""
        # Scores written earlier in this batch are not visible to db.get yet.
        pending: dict[bytes, bytes | None] = {}
        lowest: dict[bytes, bytes] = {}
        for write in writes:
            if not isinstance(write, IndexPut | IndexRemove):
                continue
            head = write.index.encode() + b"\x00"
            member = write.member.encode()
            member_key = _INDEX_MEMBER + head + member
            old = pending[member_key] if member_key in pending else self.db.get(member_key)
            if old is not None:
                batch.delete(_INDEX_ENTRY + head + old + member)
            if isinstance(write, IndexPut):
                score = sortable(float(write.score))
                entry = _INDEX_ENTRY + head + score + member
                batch.put(entry, b"")
                batch.put(member_key, score)
                pending[member_key] = score
                entries = _INDEX_ENTRY + head
                if entry < lowest.get(entries, entry + b"\x00"):
                    lowest[entries] = entry
            else:
                batch.delete(member_key)
                pending[member_key] = None
        return lowest

    def _lower_floor(self, head: bytes, entry: bytes) -> None:
        """After a write put entries into the index at `head` (`entry` the lowest)."""
        with self._floor_lock:
            self._puts[head] = self._puts.get(head, 0) + 1
            if entry < self._floors.get(head, head):
                self._floors[head] = entry

    def _index_range(self, index: str, limit: int | None) -> list[tuple[str, float]]:
        """The index from its lowest entry, read from its floor on.

        GC takes entries from the low end of its queues, and LevelDB keeps a deleted
        key as a deletion marker until compaction reaches the last level: an iterator
        from the index's first possible key stepped over every marker GC had left,
        3.4 ms for 64 entries behind 20,000 deletions against 0.1 ms with none. So
        each read notes where the live entries began, and the next one seeks there;
        an entry put below it lowers it (`_lower_floor`, after its write), and a read
        that ran while an entry went in (below the floor or not) leaves the floor be."""
        head = _INDEX_ENTRY + index.encode() + b"\x00"
        start, member = len(head), len(head) + 8
        with self._floor_lock:
            floor = self._floors.get(head, head)
            puts = self._puts.get(head, 0)
        with self.db.iterator(start=floor, stop=head[:-1] + b"\x01",
                              include_value=False) as it:
            # The whole index (GC's queue) for a rebuild: no Python step per entry.
            entries = list(it if limit is None else islice(it, limit))
        with self._floor_lock:
            # Unless an entry went in meanwhile (below entries[0] or not, seen or not).
            if self._puts.get(head, 0) == puts:
                if entries:
                    self._floors[head] = entries[0]
                elif limit != 0:
                    self._floors[head] = head[:-1] + b"\x01"  # empty: any entry lowers it
        members = map(bytes.decode, _slices(entries, member, None))
        return list(zip(members, _scores(entries, start), strict=True))

    def _index_size(self, index: str) -> int:
        head = _INDEX_MEMBER + index.encode() + b"\x00"
        with self.db.iterator(prefix=head, include_value=False) as it:
            return sum(1 for _ in it)
