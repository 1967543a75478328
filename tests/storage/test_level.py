"""What only the LevelDB backend has: one process at a time, said plainly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
