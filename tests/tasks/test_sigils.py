"""spiral.retrieve_by_sigil through real workers: on Redis (two prefork nodes) and on
the embedded deployment (LevelDB, the SQLite broker). A sigil sent by name opens its
memory; every forged, truncated, other tenant's or collected memory's sigil gets
null, never an error; and a LevelDB store rotated by the command keeps its old sigils
working through the grace period."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from spiral_tasks.errors import InvalidArgument
from spiral_tasks.security.sigils import index_name, key_id
from spiral_tasks.storage.level import LevelStorage
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import CeleryProcess
from spiral_tasks.testing.engines import engine_over
from tests.cli.programs import json_out, spiral
from tests.invariants import assert_consistent
from tests.tasks.test_embedded import embedded_env, start_embedded

WAIT = 60
STORE = "spiral.store_memory"
BY_SIGIL = "spiral.retrieve_by_sigil"


def call(app: Celery, name: str, **kwargs: Any) -> Any:
    return app.send_task(name, kwargs=kwargs).get(timeout=WAIT, interval=0.01)


def attacks(sigil: str, tenant: str) -> dict[str, tuple[str, str]]:
    """(sigil, tenant) an attacker might send, from a sigil of `tenant` they hold."""
    return {
        "forged, the right key id": (key_id(sigil) + secrets.token_hex(16), tenant),
        "forged, another key id": (secrets.token_hex(20), tenant),
        "one character changed": (sigil[:-1] + ("1" if sigil[-1] == "0" else "0"), tenant),
        "truncated": (sigil[:-4], tenant),
        "empty": ("", tenant),
        "upper case": (sigil.upper(), tenant),
        "the index entry's name": (index_name(sigil), tenant),
        "another tenant": (sigil, "someone-else"),
        "a tenant never used": (sigil, "nobody"),
    }


def test_a_sigil_opens_its_memory_through_the_workers_and_attacks_get_null(
        producer: Celery, idle_workers: list[CeleryProcess]) -> None:
    stored = call(producer, STORE, content="capability", tenant="cap", memory_id="c1")
    call(producer, STORE, content="a neighbour", tenant="someone-else", memory_id="c1")
    opened = call(producer, BY_SIGIL, sigil=stored["sigil"], tenant="cap")
    assert (opened["id"], opened["content"], opened["sigil"]) == \
        ("c1", "capability", stored["sigil"])
    assert opened["access_count"] == 0  # reading by sigil records nothing
    for name, (sigil, tenant) in attacks(stored["sigil"], "cap").items():
        assert call(producer, BY_SIGIL, sigil=sigil, tenant=tenant) is None, name
    assert call(producer, "spiral.collect_memory", memory_id="c1", tenant="cap")["collected"]
    assert call(producer, BY_SIGIL, sigil=stored["sigil"], tenant="cap") is None


def test_what_is_not_a_sigil_call_is_refused_naming_the_argument(
        producer: Celery, idle_workers: list[CeleryProcess]) -> None:
    for kwargs, argument in [({"sigil": 7}, "sigil"), ({"sigil": None}, "sigil"),
                             ({"sigil": "0" * 40, "tenant": "a b"}, "tenant"),
                             ({"sigil": "0" * 40, "memory_id": "m"}, "memory_id"),
                             ({}, "sigil")]:
        with pytest.raises(InvalidArgument) as caught:
            call(producer, BY_SIGIL, **kwargs)
        assert caught.value.argument == argument, kwargs


def test_on_leveldb_through_the_embedded_worker_and_across_a_rotation(
        tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    worker = start_embedded(env, tmp_path)
    app = create_app(env)
    try:
        kept = call(app, STORE, content="kept", tenant="cap", memory_id="k1")["sigil"]
        gone = call(app, STORE, content="gone", tenant="cap", memory_id="g1")["sigil"]
        assert call(app, "spiral.collect_memory", memory_id="g1", tenant="cap")["collected"]
        assert call(app, BY_SIGIL, sigil=kept, tenant="cap")["content"] == "kept"
        assert call(app, BY_SIGIL, sigil=gone, tenant="cap") is None
        for name, (sigil, tenant) in attacks(kept, "cap").items():
            assert call(app, BY_SIGIL, sigil=sigil, tenant=tenant) is None, name
    finally:
        worker.stop()  # LevelDB admits one process: the command needs it
    rotated = spiral(tmp_path, "rotate-sigil-secret", "--json",
                     SPIRAL_DB_PATH=str(tmp_path / "spiraldb"))
    assert rotated.returncode == 0, rotated.stderr
    summary = json_out(rotated)
    assert isinstance(summary["resign"], dict)
    assert summary["resign"]["resigned"] == 1
    with LevelStorage(tmp_path / "spiraldb") as storage:
        new = storage.get("t:{cap}:mem:k1")["sigil"]
        assert_consistent(engine_over(storage, sigil_secret=""), "cap")
    worker = start_embedded(env, tmp_path, name="embedded-again")
    try:
        assert call(app, BY_SIGIL, sigil=kept, tenant="cap")["sigil"] == new  # grace
        assert call(app, BY_SIGIL, sigil=new, tenant="cap")["id"] == "k1"
        assert call(app, BY_SIGIL, sigil=gone, tenant="cap") is None
    finally:
        worker.stop()
