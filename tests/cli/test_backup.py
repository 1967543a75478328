"""spiral backup and spiral restore, as processes: LevelDB -> file -> Redis -> file ->
LevelDB keeps every key, and a bad file or a non-empty target writes nothing."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spiral_tasks.storage.factory import open_storage
from spiral_tasks.testing.engines import engine_over
from tests.backup.damage import flipped, miscounted, truncated
from tests.cli.programs import json_out, one_line, spiral
from tests.contents import contents, populate


def level_contents(folder: Path) -> dict[str, Any]:
    with open_storage("level", db_path=folder / "spiraldb") as storage:
        return contents(storage)


def level_stats(folder: Path) -> dict[str, Any]:
    with open_storage("level", db_path=folder / "spiraldb") as storage:
        engine = engine_over(storage)
        return {t: engine.stats(t).to_json() for t in engine.tenants()}


def redis_contents(url: str) -> dict[str, Any]:
    with open_storage("redis", redis_url=url) as storage:
        return contents(storage)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    with open_storage("level", db_path=folder / "spiraldb") as storage:
        populate(engine_over(storage, sigil_secret=""))
    return folder


def test_level_to_redis_to_level_through_the_programs(source: Path, tmp_path: Path,
                                                      redis_url: str) -> None:
    expected, expected_stats = level_contents(source), level_stats(source)
    first = spiral(source, "backup", "--out", str(tmp_path / "one.jsonl"), "--json",
                   "--with-secret")
    assert first.returncode == 0, first.stderr
    summary = json_out(first)
    assert summary["tenants"] == 2
    assert summary["with_secret"] is True
    assert stat.S_IMODE(os.stat(tmp_path / "one.jsonl").st_mode) == 0o600

    into_redis = spiral(tmp_path, "restore", str(tmp_path / "one.jsonl"), redis_url=redis_url)
    assert into_redis.returncode == 0, into_redis.stderr
    assert "rebuild check: clean" in into_redis.stdout
    assert redis_contents(redis_url) == expected
    stats = spiral(tmp_path, "stats", "--tenant", "acme", "--json", redis_url=redis_url)
    assert json_out(stats) == expected_stats["acme"]

    assert spiral(tmp_path, "backup", "--out", str(tmp_path / "two.jsonl"),
                  redis_url=redis_url).returncode == 0
    target = tmp_path / "target"
    target.mkdir()
    back = spiral(target, "restore", str(tmp_path / "two.jsonl"), "--json")
    assert back.returncode == 0, back.stderr
    assert json_out(back)["rebuild_clean"] is True
    assert level_contents(target) == expected
    assert level_stats(target) == expected_stats
    assert spiral(target, "repair").returncode == 0  # nothing to correct


@pytest.mark.parametrize(("damage", "reason"), [
    (truncated, "truncated"),
    (flipped, "checksum mismatch"),
    (miscounted, "the header counts"),
])
def test_a_damaged_file_is_refused_in_one_line_with_nothing_written(
        source: Path, tmp_path: Path, damage: Callable[[bytes], bytes], reason: str) -> None:
    good = tmp_path / "good.jsonl"
    assert spiral(source, "backup", "--out", str(good)).returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(damage(good.read_bytes()))
    target = tmp_path / "target"
    target.mkdir()
    result = spiral(target, "restore", str(bad))
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(f"spiral restore: refused {bad}: ")
    assert reason in line
    assert line.endswith("nothing was written")
    assert os.listdir(target) == []  # not even opened


def test_a_target_with_tenants_is_refused_unless_replaced(source: Path, tmp_path: Path,
                                                          redis_url: str) -> None:
    backup = tmp_path / "b.jsonl"
    assert spiral(source, "backup", "--out", str(backup)).returncode == 0
    with open_storage("redis", redis_url=redis_url) as storage:
        populate(engine_over(storage), tenants=("other",), count=3)
    before = redis_contents(redis_url)
    refused = spiral(tmp_path, "restore", str(backup), redis_url=redis_url)
    assert refused.returncode == 1
    assert "the target already holds 1 tenant(s) (other)" in one_line(refused)
    assert "--replace" in refused.stderr
    assert redis_contents(redis_url) == before
    replaced = spiral(tmp_path, "restore", str(backup), "--replace", redis_url=redis_url)
    assert replaced.returncode == 0, replaced.stderr
    assert "replaced 1 tenant(s)" in replaced.stdout
    assert redis_contents(redis_url) == level_contents(source)


def test_an_existing_file_is_kept_unless_forced(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl"
    out.write_text("precious")
    result = spiral(source, "backup", "--out", str(out))
    assert result.returncode == 1
    assert "exists: pass --force" in one_line(result)
    assert out.read_text() == "precious"
    assert spiral(source, "backup", "--out", str(out), "--force").returncode == 0
