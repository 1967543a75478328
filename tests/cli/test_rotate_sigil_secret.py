"""spiral rotate-sigil-secret as a process: on LevelDB with a stored key it rotates and
re-signs; with SPIRAL_SIGIL_SECRET set it prints the steps, changes nothing and never
prints a secret. (On Redis with running workers: tests/tasks/test_sigil_rotation.py.)"""

from __future__ import annotations

from pathlib import Path

from spiral_tasks.keys import SIGIL_SECRET_KEY, TenantKeys
from spiral_tasks.security.sigils import key_id
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.testing.engines import engine_over
from tests.cli.programs import json_out, one_line, spiral

KEYS = TenantKeys("acme")


def stored_sigils(folder: Path, secret: str = "") -> dict[str, str]:
    """Memory id -> sigil of every memory of acme in the LevelDB in `folder`."""
    with open_storage("level", db_path=folder / "spiraldb") as storage:
        return {m["id"]: m["sigil"] for _, m in storage.scan(KEYS.memories)}


def opens(folder: Path, sigil: str, secret: str = "") -> str | None:
    with open_storage("level", db_path=folder / "spiraldb") as storage:
        memory = engine_over(storage, sigil_secret=secret).retrieve_by_sigil(sigil, "acme")
    return None if memory is None else memory.id


def populate(folder: Path, count: int = 5) -> dict[str, str]:
    with open_storage("level", db_path=folder / "spiraldb") as storage:
        engine = engine_over(storage, sigil_secret="")
        for i in range(count):
            engine.store(f"memory {i}", tenant="acme", memory_id=f"m{i}")
    return stored_sigils(folder)


def test_a_stored_key_is_rotated_and_every_memory_resigned(tmp_path: Path) -> None:
    before = populate(tmp_path)
    with open_storage("level", db_path=tmp_path / "spiraldb") as storage:
        first_secret = storage.get(SIGIL_SECRET_KEY)
    result = spiral(tmp_path, "rotate-sigil-secret", "--json")
    assert result.returncode == 0, result.stderr
    summary = json_out(result)
    rotation, resign = summary["rotation"], summary["resign"]
    assert isinstance(rotation, dict)
    assert isinstance(resign, dict)
    assert rotation["previous_key_id"] == key_id(before["m0"])
    assert resign == {**resign, "key_id": rotation["key_id"], "tenants": 1, "memories": 5,
                      "resigned": 5, "dropped_entries": 0}
    assert "waiting" not in result.stderr  # LevelDB: this process alone holds it
    after = stored_sigils(tmp_path)
    assert {key_id(s) for s in after.values()} == {rotation["key_id"]}
    for memory_id in before:
        assert opens(tmp_path, before[memory_id]) == memory_id  # the grace period
        assert opens(tmp_path, after[memory_id]) == memory_id
    with open_storage("level", db_path=tmp_path / "spiraldb") as storage:
        assert storage.get(SIGIL_SECRET_KEY) != first_secret
        assert first_secret not in result.stdout + result.stderr


def test_without_grace_old_sigils_stop_at_once(tmp_path: Path) -> None:
    before = populate(tmp_path, count=2)
    result = spiral(tmp_path, "rotate-sigil-secret", "--grace-days", "0")
    assert result.returncode == 0, result.stderr
    assert "sigils under it stop now (grace 0)" in result.stdout
    assert "re-signed 2 of 2 memories in 1 tenant(s)" in result.stdout
    assert opens(tmp_path, before["m0"]) is None
    assert opens(tmp_path, stored_sigils(tmp_path)["m0"]) == "m0"


def test_a_configured_secret_gets_the_steps_and_nothing_changes(tmp_path: Path) -> None:
    secret = "configured-s3cret-value"
    with open_storage("level", db_path=tmp_path / "spiraldb") as storage:
        engine_over(storage, sigil_secret=secret).store("x", tenant="acme", memory_id="m0")
    before = stored_sigils(tmp_path)
    result = spiral(tmp_path, "rotate-sigil-secret", "--grace-days", "2",
                    SPIRAL_SIGIL_SECRET=secret)
    assert result.returncode == 3, result.stderr
    assert "nothing was changed" in result.stdout
    assert "SPIRAL_SIGIL_OLD_SECRETS=<the current SPIRAL_SIGIL_SECRET>@" in result.stdout
    assert "spiral rotate-sigil-secret --resign-only" in result.stdout
    assert secret not in result.stdout + result.stderr
    assert stored_sigils(tmp_path) == before
    as_json = json_out(spiral(tmp_path, "rotate-sigil-secret", "--json",
                              SPIRAL_SIGIL_SECRET=secret))
    assert as_json["changed"] is False
    assert as_json["key_id"] == key_id(before["m0"])


def test_resign_only_follows_a_configured_rotation(tmp_path: Path) -> None:
    with open_storage("level", db_path=tmp_path / "spiraldb") as storage:
        engine_over(storage, sigil_secret="one").store("x", tenant="acme", memory_id="m0")
    old = stored_sigils(tmp_path)["m0"]
    result = spiral(tmp_path, "rotate-sigil-secret", "--resign-only", "--json",
                    SPIRAL_SIGIL_SECRET="two", SPIRAL_SIGIL_OLD_SECRETS="one")
    assert result.returncode == 0, result.stderr
    summary = json_out(result)
    assert summary["rotation"] is None
    new = stored_sigils(tmp_path)["m0"]
    assert new != old
    assert isinstance(summary["resign"], dict)
    assert summary["resign"]["key_id"] == key_id(new)


def test_bad_settings_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = spiral(tmp_path, "rotate-sigil-secret", SPIRAL_SIGIL_SECRET="s3cret",
                    SPIRAL_SIGIL_OLD_SECRETS="old-s3cret@yesterday")
    assert result.returncode == 2
    line = one_line(result)
    assert "SPIRAL_SIGIL_OLD_SECRETS: entry 1" in line
    assert "s3cret" not in line
    bad = spiral(tmp_path, "rotate-sigil-secret", "--grace-days", "-1")
    assert bad.returncode == 2
    assert "--grace-days" in bad.stderr
