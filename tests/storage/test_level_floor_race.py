"""Index floors against writes that land while a read runs, and a reopened storage."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from spiral_tasks.storage.base import IndexPut, IndexRemove
from spiral_tasks.storage.level import LevelStorage


class _WriteBetween:
    """The storage's floor lock, which runs `write` once, just before the read that
    entered it `at` times takes it again (after its iterator ran): a write that
    lands while the read runs, at one fixed point instead of by chance."""

    def __init__(self, lock: threading.Lock, at: int, write: object) -> None:
        self.lock, self.at, self.write, self.entries = lock, at, write, 0
        self.reader = threading.get_ident()

    def __enter__(self) -> None:
        if threading.get_ident() == self.reader:
            self.entries += 1
            if self.entries == self.at:
                done = threading.Thread(target=self.write)  # type: ignore[arg-type]
                done.start()
                done.join()
        self.lock.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.lock.release()


def test_an_entry_put_above_the_floor_but_below_the_first_live_one_is_read(
        tmp_path: Path) -> None:
    """The floor sits on an entry GC removed since; an entry put between it and the
    first live one while a read runs must still be read after that read."""
    with LevelStorage(tmp_path / "db") as storage:
        storage.apply([IndexPut("q", "a", 1.0), IndexPut("q", "c", 10.0)])
        assert storage.index_range("q", 1) == [("a", 1.0)]  # floor: a's entry
        storage.apply([IndexRemove("q", "a")])  # the floor now sits on a marker
        storage._floor_lock = _WriteBetween(  # type: ignore[assignment]
            storage._floor_lock, 2, lambda: storage.apply([IndexPut("q", "b", 5.0)]))
        storage.index_range("q", 1)  # may or may not see b: it ran meanwhile
        assert storage.index_range("q", 1) == [("b", 5.0)]


def test_an_index_found_empty_while_an_entry_went_in_reads_it_next(tmp_path: Path) -> None:
    with LevelStorage(tmp_path / "db") as storage:
        storage.apply([IndexPut("q", "a", 1.0)])
        assert storage.index_range("q") == [("a", 1.0)]
        storage.apply([IndexRemove("q", "a")])
        storage._floor_lock = _WriteBetween(  # type: ignore[assignment]
            storage._floor_lock, 2, lambda: storage.apply([IndexPut("q", "b", 5.0)]))
        storage.index_range("q")
        assert storage.index_range("q") == [("b", 5.0)]


def test_a_storage_reopened_reads_entries_another_put_while_it_was_closed(
        tmp_path: Path) -> None:
    """Closed, the database is another's to write (a CLI restore, a second storage
    object): the floors this one remembered say nothing of it any more."""
    first = LevelStorage(tmp_path / "db")
    with first:
        first.apply([IndexPut("q", "c", 10.0)])
        assert first.index_range("q") == [("c", 10.0)]
    with LevelStorage(tmp_path / "db") as second:
        second.apply([IndexPut("q", "a", 1.0)])
    with first:
        assert first.index_range("q") == [("a", 1.0), ("c", 10.0)]
