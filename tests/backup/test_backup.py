"""Backups across backends: every key comes back, and a bad file writes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spiral_tasks.backup import BackupRefused, TargetNotEmpty, restore, take, verify
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.keys import SIGIL_SECRET_KEY, TenantKeys
from spiral_tasks.security.rotation import rotate_stored
from spiral_tasks.security.sigils import key_id
from spiral_tasks.storage.base import Put, Storage
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.testing.engines import engine_over
from tests.backup.damage import (
    flipped,
    foreign_key,
    miscounted,
    truncated,
    without_checksum,
    wrong_version,
)
from tests.contents import contents, populate

Opener = Callable[[str], SpiralMemory]


@pytest.fixture
def open_engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Opener]:
    """Engines over fresh stores by backend name: LevelDB folders of their own, the
    test's Redis (flushed before the test)."""
    opened: list[Storage] = []

    def open_one(backend: str, secret: str = "test-secret") -> SpiralMemory:
        url = request.getfixturevalue("redis_url") if backend == "redis" else None
        storage = open_storage(backend, db_path=tmp_path / f"db{len(opened)}", redis_url=url)
        opened.append(storage)
        return engine_over(storage, sigil_secret=secret)

    yield open_one
    for storage in opened:
        storage.close()


def stats(engine: SpiralMemory) -> dict[str, object]:
    return {t: engine.stats(t).to_json() for t in engine.tenants()}


def body(path: Path) -> list[bytes]:
    """The record lines (not the header, whose creation time differs)."""
    return path.read_bytes().splitlines()[1:-1]


def test_level_to_redis_to_level_gives_identical_records_and_stats(
        open_engine: Opener, tmp_path: Path) -> None:
    source = open_engine("level")
    populate(source)
    expected, expected_stats = contents(source.storage), stats(source)
    first = take(source, tmp_path / "one.jsonl", source="level")
    assert first.header.tenants.keys() == {"acme", "zeta"}

    middle = open_engine("redis")
    restored = restore(middle, tmp_path / "one.jsonl")
    assert restored.rebuild_clean
    assert contents(middle.storage) == expected
    assert stats(middle) == expected_stats
    take(middle, tmp_path / "two.jsonl", source="redis")

    last = open_engine("level")
    restore(last, tmp_path / "two.jsonl")
    assert contents(last.storage) == expected
    assert stats(last) == expected_stats
    assert body(tmp_path / "one.jsonl") == body(tmp_path / "two.jsonl")
    # The restored store works on: a store lands beside the restored ones.
    last.store("after the restore", tenant="acme")
    assert last.stats("acme").consistent


def test_a_backup_leaves_locks_and_generations_out(open_engine: Opener,
                                                   tmp_path: Path) -> None:
    engine = open_engine("redis")
    populate(engine, tenants=("acme",), count=3)
    keys = TenantKeys("acme")
    assert engine.storage.get(keys.generation) is not None  # Redis keeps one
    take(engine, tmp_path / "b.jsonl", source="redis")
    text = (tmp_path / "b.jsonl").read_text()
    for left_out in (keys.generation, keys.lock, "meta:", "claim:"):
        assert left_out not in text


@pytest.mark.parametrize(("damage", "reason"), [
    (truncated, "truncated"),
    (without_checksum, "truncated"),
    (flipped, "checksum mismatch"),
    (miscounted, "the header counts"),
    (foreign_key, "outside tenant 'acme'"),
    (wrong_version, "version 99"),
])
def test_a_damaged_file_is_refused_before_anything_is_written(
        open_engine: Opener, tmp_path: Path, damage: Callable[[bytes], bytes],
        reason: str) -> None:
    source = open_engine("memory")
    populate(source, tenants=("acme",), count=10)
    good = tmp_path / "good.jsonl"
    take(source, good, source="memory")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(damage(good.read_bytes()))
    target = open_engine("level")
    with pytest.raises(BackupRefused, match=reason):
        restore(target, bad)
    assert contents(target.storage) == {}
    assert verify(good).keys > 0


def test_a_store_with_tenants_is_refused_unless_replaced(open_engine: Opener,
                                                        tmp_path: Path) -> None:
    source = open_engine("memory")
    populate(source, tenants=("acme",), count=10)
    take(source, tmp_path / "b.jsonl", source="memory")
    target = open_engine("redis")
    populate(target, tenants=("acme", "other"), count=4)
    before = contents(target.storage)
    with pytest.raises(TargetNotEmpty, match="2 tenant"):
        restore(target, tmp_path / "b.jsonl")
    assert contents(target.storage) == before
    summary = restore(target, tmp_path / "b.jsonl", replace=True)
    assert summary.replaced == ["acme", "other"]
    assert contents(target.storage) == contents(source.storage)
    assert target.tenants() == ["acme"]


def test_the_sigil_key_travels_only_when_asked(open_engine: Opener, tmp_path: Path) -> None:
    source = open_engine("memory", secret="")  # a generated key, kept in storage
    populate(source, tenants=("acme",), count=3)
    take(source, tmp_path / "plain.jsonl", source="memory")
    take(source, tmp_path / "keyed.jsonl", source="memory", with_secret=True)
    secret = source.storage.get(SIGIL_SECRET_KEY)
    assert secret not in (tmp_path / "plain.jsonl").read_text()

    other = open_engine("level", secret="")
    summary = restore(other, tmp_path / "plain.jsonl")
    assert "signed under another sigil key" in summary.warnings[0]
    assert other.storage.get(SIGIL_SECRET_KEY) != secret

    keyed = open_engine("level", secret="")
    summary = restore(keyed, tmp_path / "keyed.jsonl")
    assert keyed.storage.get(SIGIL_SECRET_KEY) == secret
    assert "installed the backup's sigil key" in summary.warnings[0]


def test_a_restore_can_be_checked_by_a_rebuild(open_engine: Opener, tmp_path: Path) -> None:
    """A backup of drifted statistics restores them as they were (a backup copies,
    it does not repair), and the restore says the rebuild would correct them."""
    source = open_engine("memory")
    populate(source, tenants=("acme",), count=5)
    source.storage.apply([Put(TenantKeys("acme").memory_count, 99)])
    take(source, tmp_path / "b.jsonl", source="memory")
    target = open_engine("level")
    assert not restore(target, tmp_path / "b.jsonl").rebuild_clean
    assert target.storage.get(TenantKeys("acme").memory_count) == 99


def test_a_backup_with_its_keys_carries_a_rotations_grace_period_across(
        open_engine: Opener, tmp_path: Path) -> None:
    """Key ids travel with the memories: a backup taken mid-rotation (some sigils under
    the old key, in their grace period) and restored with its keys opens both kinds;
    restored into a store with keys of its own, the restore names the keys it does not
    accept, and re-signing gives the memories sigils that work there."""
    source = open_engine("memory", secret="")
    old = source.store("before the rotation", tenant="acme", memory_id="m1").stored.sigil
    rotate_stored(source.storage, grace_s=3600, now=time.time, settle=lambda _: None)
    source.context.sigils.reload()
    new = source.store("after the rotation", tenant="acme", memory_id="m2").stored.sigil
    take(source, tmp_path / "keyed.jsonl", source="memory", with_secret=True)
    take(source, tmp_path / "plain.jsonl", source="memory")

    keyed = open_engine("redis", secret="")
    summary = restore(keyed, tmp_path / "keyed.jsonl")
    assert summary.warnings == [summary.warnings[0]]
    assert "1 other(s) accepted" in summary.warnings[0]
    assert [m.id if (m := keyed.retrieve_by_sigil(s, tenant="acme")) else None
            for s in (old, new)] == ["m1", "m2"]

    elsewhere = open_engine("level", secret="elsewhere")
    summary = restore(elsewhere, tmp_path / "plain.jsonl")
    assert "2 of the backup's memories were signed under another sigil key" in \
        summary.warnings[0]
    assert key_id(old) in summary.warnings[0]
    assert key_id(new) in summary.warnings[0]
    assert elsewhere.retrieve_by_sigil(old, tenant="acme") is None
    assert elsewhere.resign_sigils().resigned == 2
    for memory_id in ("m1", "m2"):
        sigil = elsewhere.storage.get(TenantKeys("acme").memory(memory_id))["sigil"]
        opened = elsewhere.retrieve_by_sigil(sigil, tenant="acme")
        assert opened is not None
        assert opened.id == memory_id
