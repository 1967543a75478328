"""What only the LevelDB backend has: one process at a time, said plainly."""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_tasks.storage.base import IndexPut, IndexRemove
from spiral_tasks.storage.level import LevelStorage

OPEN_IN_A_CHILD = """
import sys
import threading
from spiral_tasks.errors import StorageUnavailable
from spiral_tasks.storage.level import LevelStorage
try:
    LevelStorage(sys.argv[1]).init()
except StorageUnavailable as exc:
    print(type(exc).__name__, exc)
"""


def test_a_second_process_is_told_who_holds_the_database(tmp_path: Path) -> None:
    with LevelStorage(tmp_path / "db"):
        child = subprocess.run([sys.executable, "-c", OPEN_IN_A_CHILD, str(tmp_path / "db")],
                               capture_output=True, text=True, timeout=60, check=True)
    message = child.stdout.strip()
    assert message.startswith("StorageHeld ")  # told apart from an unreachable store
    assert "LevelDB admits one process at a time" in message
    assert "IO error: lock" in message
    assert "b'" not in message  # LevelDB's own words as text, not a bytes repr


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=False), max_size=40))
def test_an_index_reads_back_every_score_exactly(scores: list[float]) -> None:
    """The scores of an index are read all at once when none is negative, one at a time
    otherwise: either way each comes back bit for bit (-0.0, the infinities too), in
    score order, and each member with it."""
    with tempfile.TemporaryDirectory() as folder, LevelStorage(Path(folder) / "db") as storage:
        storage.apply([IndexPut("q", f"m{i}", score) for i, score in enumerate(scores)])
        found = storage.index_range("q")
        assert [struct.pack(">d", s) for _, s in found] == \
            [struct.pack(">d", scores[int(m[1:])]) for m, _ in found]
        assert sorted(m for m, _ in found) == sorted(f"m{i}" for i in range(len(scores)))
        assert [s for _, s in found] == sorted(scores)
        assert storage.index_range("q", 3) == found[:3]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "remove", "read"]), st.integers(0, 9),
                          st.integers(-5, 5)), max_size=60))
def test_an_index_read_from_its_floor_misses_no_entry(steps: list[tuple[str, int, int]]
                                                      ) -> None:
    """A read seeks from where the last one found the live entries beginning (GC's
    queues lose their low end as it collects): entries put below that floor, moved
    below it, or put into an index found empty are read all the same, with any limit."""
    model: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder, LevelStorage(Path(folder) / "db") as storage:
        for op, member, number in steps:
            if op == "put":
                storage.apply([IndexPut("q", f"m{member}", float(number))])
                model[f"m{member}"] = float(number)
            elif op == "remove":
                storage.apply([IndexRemove("q", f"m{member}")])
                model.pop(f"m{member}", None)
            else:
                limit = None if number < 0 else number
                expected = sorted(model.items(), key=lambda item: (item[1], item[0]))
                assert storage.index_range("q", limit) == expected[:limit]


def test_an_entry_put_while_another_thread_reads_is_read_next(tmp_path: Path) -> None:
    """A read that ran while an entry went in below its floor must not raise the floor
    past that entry: each entry, once its write returned, is the lowest read. (With
    the floor raised whatever went in meanwhile, this failed in two runs of three.)"""
    with LevelStorage(tmp_path / "db") as storage:
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                storage.index_range("q", 1)

        reader = threading.Thread(target=read)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # threads switch often: reads straddle writes
        reader.start()
        try:
            for i in range(20_000):
                storage.apply([IndexPut("q", f"m{i}", float(-i))])
                assert storage.index_range("q", 1) == [(f"m{i}", float(-i))]
        finally:
            stop.set()
            reader.join()
            sys.setswitchinterval(interval)
