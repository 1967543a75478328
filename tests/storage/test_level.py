"""What only the LevelDB backend has: one process at a time, said plainly."""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_tasks.storage.base import IndexPut
from spiral_tasks.storage.level import LevelStorage

OPEN_IN_A_CHILD = """
import sys
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
