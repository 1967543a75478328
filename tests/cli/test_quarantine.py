"""Corrupt records and the commands an operator runs: spiral repair reports and
quarantines them (exit 2), spiral quarantine lists what was set aside and purges it."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.testing.engines import engine_over
from tests.cli.programs import json_out, one_line, spiral
from tests.contents import populate
from tests.corruption import write_raw

ACME, ZETA = TenantKeys("acme"), TenantKeys("zeta")
BAD_JSON = b'{"id": "m1", "content": '
WRONG_TYPES = b'["not", "a", "memory"]'


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A LevelDB store (tmp_path/spiraldb, where the programs look) with two memory
    records of acme and a spiral record of zeta damaged on disk."""
    with open_storage("level", db_path=tmp_path / "spiraldb") as storage:
        engine = engine_over(storage)
        populate(engine, tenants=("acme", "zeta"), count=20)
        zeta_spiral = storage.get(ZETA.memory("m2"))["spiral_id"]
        write_raw(storage, ACME.memory("m2"), BAD_JSON)
        write_raw(storage, ACME.memory("m3"), WRONG_TYPES)
        write_raw(storage, ZETA.spiral(zeta_spiral), b"\xff\x00")
    return tmp_path


def test_repair_reports_each_corrupt_record_and_quarantines_it(damaged: Path) -> None:
    dry = spiral(damaged, "repair", "--dry-run")
    assert dry.returncode == 2, dry.stderr
    assert "Quarantined:         3" in dry.stdout
    assert f"quarantined {ACME.memory('m2')}: not JSON" in dry.stdout
    assert "(1 not counted: corrupt records)" in dry.stdout  # zeta's spirals
    assert "nothing was written (dry run)" in dry.stdout

    fixed = spiral(damaged, "repair", "--json")
    assert fixed.returncode == 2, fixed.stderr
    report = json_out(fixed)["report"]
    moved = {q["key"]: q for q in report["quarantined"]}  # type: ignore[index]
    assert set(moved) == {ACME.memory("m2"), ACME.memory("m3"), *(
        k for k in moved if k.startswith(ZETA.spirals))}
    assert len(moved) == 3
    assert moved[ACME.memory("m3")]["reason"].startswith("not a memory record")
    assert all(q["moved_to"].startswith(ACME.quarantine) or
               q["moved_to"].startswith(ZETA.quarantine) for q in moved.values())

    again = spiral(damaged, "repair")
    assert again.returncode == 0, again.stderr
    assert "Quarantined:         0" in again.stdout


def test_quarantine_lists_what_was_set_aside_and_purges_it(damaged: Path) -> None:
    assert spiral(damaged, "repair").returncode == 2
    listed = spiral(damaged, "quarantine", "--tenant", "acme")
    assert listed.returncode == 0, listed.stderr
    assert "2 record(s) in quarantine in tenant acme" in listed.stdout
    assert f"was {ACME.memory('m2')}, moved " in listed.stdout
    as_json = json_out(spiral(damaged, "quarantine", "--json"))
    assert as_json["count"] == 3
    records = as_json["records"]
    assert isinstance(records, dict)
    by_key = {envelope["key"]: (where, envelope) for where, envelope in records.items()}
    where, envelope = by_key[ACME.memory("m2")]
    assert base64.b64decode(envelope["raw_base64"]) == BAD_JSON
    assert by_key[ACME.memory("m3")][1]["value"] == ["not", "a", "memory"]

    missing = spiral(damaged, "quarantine", "--purge", ACME.quarantine + "nothing@1")
    assert missing.returncode == 1
    assert "is not in tenant 'acme''s quarantine; nothing purged" in one_line(missing)
    assert spiral(damaged, "quarantine", "--purge", "no-such-key").returncode == 2
    purged = spiral(damaged, "quarantine", "--purge", where)
    assert purged.returncode == 0, purged.stderr
    assert json_out(spiral(damaged, "quarantine", "--json"))["count"] == 2
    with open_storage("level", db_path=damaged / "spiraldb") as storage:
        assert storage.keys(ACME.quarantine) == [by_key[ACME.memory("m3")][0]]


def test_a_tenant_most_of_whose_records_do_not_decode_is_refused_exit_1(
        tmp_path: Path) -> None:
    """What a wrong key looks like: the tenant is left alone, the others repaired."""
    with open_storage("level", db_path=tmp_path / "spiraldb") as storage:
        populate(engine_over(storage), tenants=("acme", "zeta"), count=20)
        for key in storage.keys(ACME.memories):
            write_raw(storage, key, b"\x01sealed under another key")
        write_raw(storage, ZETA.memory("m4"), b"{")
    result = spiral(tmp_path, "repair")
    assert result.returncode == 1, result.stdout
    assert "Refused: tenant 'acme': 17 of its 17 memory records do not decode" in result.stdout
    assert f"quarantined {ZETA.memory('m4')}" in result.stdout
    assert "1 tenant(s) refused, left as they were" in result.stdout
    with open_storage("level", db_path=tmp_path / "spiraldb") as storage:
        assert len(storage.keys(ACME.memories)) == 17
        assert storage.keys(ACME.quarantine) == []
