"""In-process storage for development and tests. Values are kept encoded, so what
comes out is a copy with exactly the JSON fidelity of the persistent backends."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from sortedcontainers import SortedList

from spiral_tasks.storage.base import (
    EncodedLogAppend,
    EncodedWrite,
    IndexPut,
    IndexRemove,
    LogTrim,
    Storage,
    Write,
    _read_one,
    add_to_counter,
    check_key,
    decode_or_unreadable,
    seq_position,
    stage_values,
    stage_writes,
)
from spiral_tasks.storage.codec import Codec


class _OrderedIndex:
    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.order: SortedList = SortedList()

    def put(self, member: str, score: float) -> None:
        if member in self.scores:  # a new member (every store's) has nothing to remove
            self.remove(member)
        self.scores[member] = score
        self.order.add((score, member))

    def remove(self, member: str) -> None:
        old = self.scores.pop(member, None)
        if old is not None:
            self.order.remove((old, member))


class MemoryStorage(Storage):
    name = "memory"

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._indexes: dict[str, _OrderedIndex] = {}
        #: Append-only logs: (position, value) in order; a position is the entry's
        #: seq in 20 digits, so positions sort as numbers.
        self._logs: dict[str, list[tuple[str, bytes]]] = {}
        self._lock = threading.Lock()

    def init(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read_many(self, keys: Sequence[str]) -> list[Any | None]:
        """`Storage.read_many` without the steps between: every key checked first, then
        each value read and decoded (every section reads the audit log's head so)."""
        for key in keys:
            check_key(key)
        data, values = self._data, self.codec
        read = _read_one if type(values) is Codec else decode_or_unreadable
        return [None if (raw := data.get(key)) is None else read(key, raw, values)
                for key in keys]

    def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        data = self._data
        return [data.get(k) for k in keys]

    def _get(self, key: str) -> bytes | None:
        return self._data.get(key)

    def _keys(self, prefix: str) -> list[str]:
        with self._lock:
            return [k for k in self._data if k.startswith(prefix)]

    def _scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        with self._lock:
            snapshot = [(k, v) for k, v in self._data.items() if k.startswith(prefix)]
        yield from snapshot

    def _incr(self, key: str, delta: int) -> int:
        with self._lock:
            value = add_to_counter(key, self._data.get(key), delta)
            self._data[key] = str(value).encode()
            return value

    def _set_if_absent_raw(self, key: str, raw: bytes) -> bytes:
        with self._lock:
            return self._data.setdefault(key, raw)

    def apply(self, writes: Sequence[Write]) -> int | None:
        """`Storage.apply`, checked, encoded and staged in one pass (`stage_writes`)."""
        if not writes:
            return None
        with self._lock:
            return self._write(*stage_writes(writes, self.codec, self._data.get))

    def _apply(self, writes: Sequence[EncodedWrite]) -> int | None:
        with self._lock:
            return self._write(*stage_values(writes, self._data.get))

    def _write(self, staged: dict[str, bytes | None], last: int | None,
               rest: Sequence[EncodedWrite]) -> int | None:
        """Apply a staged batch (the caller holds the lock); `last` is handed back."""
        data = self._data
        for key, raw in staged.items():
            if raw is None:
                data.pop(key, None)
            else:
                data[key] = raw
        for write in rest:
            if isinstance(write, IndexPut):
                index = self._indexes.get(write.index)
                if index is None:
                    index = self._indexes[write.index] = _OrderedIndex()
                index.put(write.member, float(write.score))
            elif isinstance(write, IndexRemove) and write.index in self._indexes:
                self._indexes[write.index].remove(write.member)
            elif isinstance(write, EncodedLogAppend):
                self._logs.setdefault(write.log, []).append(
                    (seq_position(write.seq), write.raw))
            elif isinstance(write, LogTrim):
                self._logs[write.log] = [e for e in self._logs.get(write.log, [])
                                         if e[0] > write.through]
        return last

    def _index_range(self, index: str, limit: int | None) -> list[tuple[str, float]]:
        with self._lock:
            found = self._indexes.get(index)
            if found is None:
                return []
            entries = found.order[:limit] if limit is not None else list(found.order)
            return [(member, score) for score, member in entries]

    def _index_size(self, index: str) -> int:
        with self._lock:
            found = self._indexes.get(index)
            return len(found.scores) if found else 0

    def _log_read(self, log: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        with self._lock:
            entries = self._logs.get(log, [])
            return [e for e in entries if after is None or e[0] > after][:limit]

