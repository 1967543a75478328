"""Backups of sealed stores: the file carries memory records sealed, as the store does;
restoring needs the key; a sealed line moved or forged is refused, nothing written."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from spiral_tasks.backup import BackupRefused, restore, take, verify
from spiral_tasks.backup.fileformat import SEALED_VERSION
from spiral_tasks.config import EncryptionSettings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.keys import TenantKeys, is_memory_record
from spiral_tasks.security import envelope
from spiral_tasks.security.atrest import codec_for
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.testing.encryption import key_id_of, new_key, sealing
from spiral_tasks.testing.engines import engine_over
from tests.backup.damage import reseal
from tests.contents import contents, populate

Opener = Callable[[str, EncryptionSettings], SpiralMemory]
#: Text of every memory `populate` stores.
CONTENT = b"memory "


@pytest.fixture
def open_engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Opener]:
    opened: list[Storage] = []

    def open_one(backend: str, encryption: EncryptionSettings) -> SpiralMemory:
        url = request.getfixturevalue("redis_url") if backend == "redis" else None
        storage = open_storage(backend, db_path=tmp_path / f"db{len(opened)}", redis_url=url,
                               encryption=encryption)
        opened.append(storage)
        return engine_over(storage)

    yield open_one
    for storage in opened:
        storage.close()


def sealed_lines(path: Path) -> list[dict[str, object]]:
    return [line for line in map(orjson.loads, path.read_bytes().splitlines()[1:-1])
            if "sealed" in line]


def test_a_sealed_store_is_backed_up_sealed_and_restored_under_the_target_key(
        open_engine: Opener, tmp_path: Path) -> None:
    source_key, target_key = new_key(), new_key()
    source = open_engine("level", sealing(source_key))
    populate(source)
    expected = contents(source.storage)
    path = tmp_path / "sealed.jsonl"
    summary = take(source, path, source="level")
    data = path.read_bytes()
    assert CONTENT not in data
    header = orjson.loads(data.splitlines()[0])
    assert header["version"] == SEALED_VERSION
    assert header["sealing"] == {"key_id": key_id_of(source_key)}
    records = sum(1 for k in expected if is_memory_record(k))
    assert len(sealed_lines(path)) == records > 0
    assert summary.to_json()["sealed_under"] == key_id_of(source_key)
    # Another store, with its own key, opens the file with the source's key beside it.
    target = open_engine("redis", sealing(target_key, source_key))
    assert restore(target, path).rebuild_clean
    assert contents(target.storage) == expected
    for tenant in ("acme", "zeta"):
        for _, raw in target.storage.scan_stored(TenantKeys(tenant).memories):
            assert envelope.key_id_of(raw) == key_id_of(target_key)


@pytest.mark.parametrize("encryption", [EncryptionSettings(), sealing(new_key())],
                         ids=["no key", "another key"])
def test_a_sealed_backup_without_its_key_is_refused_and_nothing_written(
        open_engine: Opener, tmp_path: Path, encryption: EncryptionSettings) -> None:
    key = new_key()
    source = open_engine("memory", sealing(key))
    populate(source, count=5)
    path = tmp_path / "sealed.jsonl"
    take(source, path, source="memory")
    target = open_engine("level", encryption)
    with pytest.raises(BackupRefused, match=f"line 2: .*key id {key_id_of(key)}"):
        restore(target, path)
    assert [k for k in target.storage.keys("") if not k.startswith("meta:")] == []
    with pytest.raises(BackupRefused, match=key_id_of(key)):
        verify(path, codec_for(encryption))


def test_a_plain_backup_restored_into_a_sealed_store_is_sealed(
        open_engine: Opener, tmp_path: Path) -> None:
    source = open_engine("memory", EncryptionSettings())
    populate(source)
    path = tmp_path / "plain.jsonl"
    take(source, path, source="memory")
    assert orjson.loads(path.read_bytes().splitlines()[0])["version"] == 1
    assert sealed_lines(path) == []
    assert CONTENT in path.read_bytes()
    key = new_key()
    target = open_engine("redis", sealing(key))
    restore(target, path)
    assert contents(target.storage) == contents(source.storage)
    raws = [raw for _, raw in target.storage.scan_stored(TenantKeys("acme").memories)]
    assert raws
    assert all(envelope.key_id_of(raw) == key_id_of(key) for raw in raws)


def test_a_sealed_line_moved_to_another_record_is_refused(open_engine: Opener,
                                                          tmp_path: Path) -> None:
    key = new_key()
    source = open_engine("memory", sealing(key))
    populate(source, count=5)
    path = tmp_path / "sealed.jsonl"
    take(source, path, source="memory")
    lines = path.read_bytes().splitlines(keepends=True)[:-1]
    numbers = [i for i, line in enumerate(lines) if b'"sealed"' in line]
    first, second = (orjson.loads(lines[i]) for i in numbers[:2])
    second["sealed"] = first["sealed"]  # a valid seal, for another memory id
    lines[numbers[1]] = orjson.dumps(second, option=orjson.OPT_SORT_KEYS) + b"\n"
    path.write_bytes(reseal(lines))  # a checksum that matches: only the seal can tell
    with pytest.raises(BackupRefused, match=f"line {numbers[1] + 1}: .*does not open"):
        verify(path, codec_for(sealing(key)))
