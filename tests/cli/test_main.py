"""One `spiral` command: every subcommand answers --help with its exit codes, and the
older names (spiral-demo, spiral-enqueue, spiral-repair) still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.programs import spiral

SUBCOMMANDS = ["repair", "perf", "backup", "restore", "stats", "quarantine",
               "rotate-sigil-secret", "demo", "enqueue"]


def test_spiral_lists_every_subcommand(tmp_path: Path) -> None:
    result = spiral(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert f"  {name} " in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_documents_its_exit_codes(tmp_path: Path, name: str) -> None:
    result = spiral(tmp_path, name, "--help")
    assert result.returncode == 0, result.stderr
    assert f"Usage: spiral {name}" in result.stdout
    assert "Exit codes: 0" in " ".join(result.stdout.split())


@pytest.mark.parametrize("program", ["spiral-demo", "spiral-enqueue", "spiral-repair"])
def test_the_older_names_still_work(tmp_path: Path, program: str) -> None:
    result = spiral(tmp_path, "--help", program=program)
    assert result.returncode == 0, result.stderr
    assert f"Usage: {program}" in result.stdout
    assert list(tmp_path.iterdir()) == []  # --help touches nothing
