"""Attacks on the audit log: the raw Redis stream or LevelDB key range is tampered
with (an entry removed, altered, reordered, inserted, the end cut off, the checkpoint
forged) and `spiral audit verify`, run as an operator runs it, exits 1 naming the
first bad entry; the untouched log exits 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from spiral_tasks.audit.chain import entry_hash
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.base import Storage
from spiral_tasks.testing.engines import engine_over
from tests.audit.tamper import edited, raw_log, rewrite
from tests.cli.programs import json_out, spiral
from tests.conftest import make_storage

TENANT = "acme"


@pytest.fixture(params=["level", "redis"])
def logged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Storage, str | None]]:
    """A store whose tenant has six audit entries (five stores, a collect), open for
    tampering; the Redis URL (None: LevelDB in tmp_path/spiraldb)."""
    storage = make_storage(request.param, tmp_path, request)
    engine = engine_over(storage)
    ids = [engine.store(f"memory {n}", tenant=TENANT).id for n in range(5)]
    engine.collect(ids[0], tenant=TENANT)
    assert len(raw_log(storage, TENANT)) == 6
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    yield storage, url
    storage.close()


def verify(storage: Storage, url: str | None, workdir: Path, *args: str,
           **env: str) -> tuple[int, dict[str, Any]]:
    storage.close()  # LevelDB admits one process: the CLI's
    result = spiral(workdir, "audit", "verify", "--json", *args, redis_url=url, **env)
    assert "Traceback" not in result.stderr
    return result.returncode, json_out(result)


def first_bad(report: dict[str, Any]) -> dict[str, Any]:
    (tenant,) = report["tenants"]
    assert tenant["tenant"] == TENANT
    assert not tenant["ok"]
    bad: dict[str, Any] = tenant["first_bad"]
    return bad


def test_an_untouched_log_verifies(logged: tuple[Storage, str | None], tmp_path: Path) -> None:
    code, report = verify(*logged, tmp_path)
    assert code == 0, report
    assert report["ok"]
    assert report["tenants"][0]["entries"] == 6
    assert report["tenants"][0]["head"] == 6


def _removed(raws: list[bytes]) -> tuple[list[bytes], int]:
    return raws[:2] + raws[3:], 2  # entry 3 gone: entry 4 stands where it was


def _altered(raws: list[bytes]) -> tuple[list[bytes], int]:
    raws[2] = edited(raws[2], ids=["someone-elses-memory"])
    return raws, 2


def _reordered(raws: list[bytes]) -> tuple[list[bytes], int]:
    raws[2], raws[3] = raws[3], raws[2]
    return raws, 2


def _inserted(raws: list[bytes]) -> tuple[list[bytes], int]:
    """A forged entry 3 that hashes right and follows entry 2, before the real one:
    only the key's signature can tell it from a genuine entry."""
    forged = orjson.loads(raws[2])
    forged["op"], forged["ids"] = "collect", ["a-memory-never-collected"]
    forged["hash"] = entry_hash(forged)
    return [*raws[:2], orjson.dumps(forged), *raws[2:]], 2


ATTACKS: dict[str, tuple[Callable[[list[bytes]], tuple[list[bytes], int]], str]] = {
    "removed": (_removed, "entry 3 was removed"),
    "altered": (_altered, "was altered"),
    "reordered": (_reordered, "entry 3 was removed (or the entries were reordered)"),
    "inserted": (_inserted, "signature does not verify (inserted or forged)"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_tampered_entry_is_named(logged: tuple[Storage, str | None], tmp_path: Path,
                                   attack: str) -> None:
    storage, url = logged
    tamper, why = ATTACKS[attack]
    raws, bad_index = tamper(raw_log(storage, TENANT))
    positions = rewrite(storage, TENANT, raws)
    code, report = verify(storage, url, tmp_path)
    assert code == 1
    bad = first_bad(report)
    assert bad["position"] == positions[bad_index]
    assert why in bad["why"]


def test_entries_cut_off_the_end_are_named(logged: tuple[Storage, str | None],
                                           tmp_path: Path) -> None:
    storage, url = logged
    rewrite(storage, TENANT, raw_log(storage, TENANT)[:4])
    code, report = verify(storage, url, tmp_path)
    assert code == 1
    bad = first_bad(report)
    assert bad["seq"] == 5
    assert "entries 5 to 6 were removed from the end" in bad["why"]


def test_a_rewritten_head_does_not_hide_a_cut(logged: tuple[Storage, str | None],
                                              tmp_path: Path) -> None:
    """Cutting the end and moving the head back to the new end needs the key."""
    storage, url = logged
    raws = raw_log(storage, TENANT)[:4]
    rewrite(storage, TENANT, raws)
    last = orjson.loads(raws[-1])
    head = TenantKeys(TENANT).audit_head
    storage.set(head, {**storage.get(head), "seq": 4, "hash": last["hash"]})
    code, report = verify(storage, url, tmp_path)
    assert code == 1
    assert "the head's signature does not verify" in first_bad(report)["why"]


def test_another_key_verifies_nothing(logged: tuple[Storage, str | None],
                                      tmp_path: Path) -> None:
    """Entries signed under another deployment's key are not this one's."""
    code, report = verify(*logged, tmp_path, SPIRAL_AUDIT_KEY="another-deployments-key")
    assert code == 1
    bad = first_bad(report)
    assert bad["seq"] == 1
    assert "signature does not verify" in bad["why"]


def test_the_text_report_names_the_entry(logged: tuple[Storage, str | None],
                                         tmp_path: Path) -> None:
    storage, url = logged
    raws, _ = _altered(raw_log(storage, TENANT))
    positions = rewrite(storage, TENANT, raws)
    storage.close()
    result = spiral(tmp_path, "audit", "verify", redis_url=url)
    assert result.returncode == 1
    assert f"{TENANT}: BROKEN at position {positions[2]} (entry 3): entry was altered" \
        in result.stdout
    assert "1 chain(s) broken" in result.stdout


def test_verify_says_when_it_could_not_check(tmp_path: Path) -> None:
    result = spiral(tmp_path, "audit", "verify", redis_url="redis://127.0.0.1:1/0")
    assert result.returncode == 3
    assert "cannot open Redis" in result.stderr
