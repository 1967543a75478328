"""spiral repair (and spiral-repair): the runbook's report, and exit codes a script can
act on: 0 nothing to correct, 2 corrections applied, 1 an error said in one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import start_worker, wait_for_workers, worker_env
from spiral_tasks.testing.engines import engine_over
from spiral_tasks.testing.redis_server import free_port
from tests.cli.programs import json_out, one_line, spiral
from tests.contents import contents, populate

KEYS = TenantKeys("acme")


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """A LevelDB store in tmp_path/spiraldb (where the programs look), closed again."""
    with open_storage("level", db_path=tmp_path / "spiraldb") as storage:
        populate(engine_over(storage), tenants=("acme", "zeta"), count=20)
    return tmp_path


def corrupt(folder: Path) -> None:
    with open_storage("level", db_path=folder / "spiraldb") as storage:
        storage.set(KEYS.memory_count, 3)


def test_a_clean_store_exits_0_with_the_runbooks_report(stored: Path) -> None:
    result = spiral(stored, "repair")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("Spiral Memory Repair Tool", "Initialization completed in",
                     "Current state: 34 memories across", "in 2 tenant(s)", "REPAIR REPORT",
                     "Total nodes scanned: 34", "nodes/second (target under 5 s: met)",
                     "Nothing to correct"):
        assert expected in out


def test_corrections_exit_2_then_the_store_is_clean(stored: Path) -> None:
    corrupt(stored)
    dry = spiral(stored, "repair", "--dry-run", "--verbose")
    assert dry.returncode == 2, dry.stderr
    assert f"counter {KEYS.memory_count}: 3 -> 17" in dry.stdout
    assert "nothing was written (dry run)" in dry.stdout
    assert spiral(stored, "repair", "--dry-run").returncode == 2  # still there

    fixed = spiral(stored, "repair", "--tenant", "acme")
    assert fixed.returncode == 2, fixed.stderr
    assert "Corrections applied" in fixed.stdout
    assert "Current state: 3 memories" in fixed.stdout  # what the counter said before
    again = spiral(stored, program="spiral-repair")  # the runbook's name
    assert again.returncode == 0, again.stderr
    assert "Nothing to correct" in again.stdout


def test_json_parses_and_says_what_the_exit_code_says(stored: Path) -> None:
    corrupt(stored)
    result = spiral(stored, "repair", "--json")
    assert result.returncode == 2
    report = json_out(result)
    assert report["clean"] is False
    assert report["exit_code"] == 2
    assert report["current_state"] == {"tenants": 2, "memories": 20, "spirals": 10,
                                       "unreadable_tenants": 0}
    assert report["report"]["corrected_counters"] == [  # type: ignore[index]
        {"key": KEYS.memory_count, "before": 3, "after": 17}]
    assert report["target_met"] is True


def test_a_dry_run_writes_nothing(stored: Path) -> None:
    corrupt(stored)
    with open_storage("level", db_path=stored / "spiraldb") as storage:
        before = contents(storage)
    assert spiral(stored, "repair", "--dry-run").returncode == 2
    with open_storage("level", db_path=stored / "spiraldb") as storage:
        assert contents(storage) == before


def test_an_unreachable_redis_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = spiral(tmp_path, "repair", redis_url=url)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("spiral repair: cannot open Redis at redis://:***@127.0.0.1:")
    assert "hunter2" not in line
    assert result.stdout == ""


def test_bad_arguments_exit_1_not_2(tmp_path: Path) -> None:
    """2 means corrections were applied: a typo must not look like that."""
    assert spiral(tmp_path, "repair", "--tenant", "a b").returncode == 1
    assert spiral(tmp_path, "repair", "--bogus").returncode == 1
    assert spiral(tmp_path, "repair", SPIRAL_TURNS="x").returncode == 1


@pytest.fixture
def embedded_worker(stored: Path) -> Iterator[Path]:
    """The embedded deployment's worker, holding tmp_path/spiraldb."""
    env = worker_env(None, SPIRAL_DB_PATH=str(stored / "spiraldb"),
                     SPIRAL_EMBEDDED_DIR=str(stored / "spiral-embedded"))
    worker = start_worker(env, stored, "holder", pool="threads", concurrency=1)
    try:
        wait_for_workers(create_app(env), ["holder"])
        yield stored
    finally:
        worker.stop()


def test_leveldb_held_by_a_running_worker_says_what_to_run_instead(
        embedded_worker: Path) -> None:
    result = spiral(embedded_worker, "repair", "--tenant", "acme")
    assert result.returncode == 1
    line = one_line(result)
    assert "LevelDB at ./spiraldb is held by another process, most likely a running " \
           "worker" in line
    assert "spiral-enqueue --rebuild --tenant acme" in line
    assert "or stop the worker" in line
