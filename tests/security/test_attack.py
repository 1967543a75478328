"""Encryption at rest, attacked from outside: real worker processes store through
Celery, then everything the storage Redis holds (every key of every type, its snapshot
file, its append-only file) and every byte of a LevelDB folder is searched for the
memories' contents, raw and in base64. A control written without a key proves the
search finds plaintext where there is some. Workers without the key, or with a wrong
one, refuse to start."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from spiral_tasks.storage.factory import open_storage
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    running_workers,
    start_worker,
    worker_env,
)
from spiral_tasks.testing.encryption import key_env, key_id_of, new_key, sealing
from spiral_tasks.testing.engines import engine_over
from spiral_tasks.testing.redis_server import RedisServer
from tests.invariants import assert_consistent

TENANTS = ("acme", "zeta")
STORES = 40
KEY = new_key()


def forms(secret: str) -> list[bytes]:
    """`secret` as bytes, and as it shows inside base64 at each of the three offsets
    (a Celery message body, say): the characters no neighbour can change."""
    raw = secret.encode()
    found = [raw]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        found.append(encoded[4 if offset else 0:-4])
    return found


def leaked(secrets: list[str], haystack: bytes) -> list[str]:
    return [s for s in secrets if any(form in haystack for form in forms(s))]


def redis_contents(client: redis.Redis) -> bytes:
    """Every key of the server's every database with its value, whatever its type."""
    out: list[bytes] = []
    for db in range(16):
        client.execute_command("SELECT", db)
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            out.append(key)
            if kind == b"string":
                out.append(client.get(key) or b"")
            elif kind == b"zset":
                out += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"hash":
                out += [b"%s=%s" % item for item in client.hgetall(key).items()]
            elif kind == b"list":
                out += client.lrange(key, 0, -1)
            elif kind == b"set":
                out += list(client.smembers(key))
            elif kind == b"stream":
                out += [repr(entry).encode() for entry in client.xrange(key)]
    client.execute_command("SELECT", 0)
    return b"\n".join(out)


def files_under(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def sealed_env(persisted_redis: RedisServer, worker_redis: RedisServer) -> dict[str, str]:
    """Storage on the persisted Redis, sealed with KEY; the broker and results on
    another Redis (their messages carry contents: see the README's security section)."""
    return worker_env(persisted_redis.url, SPIRAL_BROKER_URL=worker_redis.url,
                      SPIRAL_RESULT_BACKEND=worker_redis.url, **key_env(KEY))


@pytest.fixture(scope="module")
def sealed_app(sealed_env: dict[str, str]) -> Celery:
    return create_app(sealed_env)


@pytest.fixture(scope="module")
def sealed_workers(sealed_app: Celery, sealed_env: dict[str, str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[CeleryProcess]]:
    with running_workers(sealed_app, sealed_env, tmp_path_factory.mktemp("sealed"),
                         ["sealed"]) as nodes:
        yield nodes


def test_the_storage_redis_holds_no_plaintext_after_real_workers_stored(
        sealed_workers: list[CeleryProcess], sealed_app: Celery,
        persisted_redis: RedisServer) -> None:
    secrets = [f"diary-{uuid.uuid4().hex}" for _ in range(STORES)]
    labels = [f"label{uuid.uuid4().hex[:12]}" for _ in range(STORES)]
    sent = [sealed_app.send_task("spiral.store_memory", kwargs={
        "content": secret, "type": label, "tenant": TENANTS[n % 2], "memory_id": f"m{n}"})
        for n, (secret, label) in enumerate(zip(secrets, labels, strict=True))]
    answers = [result.get(timeout=120) for result in sent]
    assert all(a["created"] for a in answers)
    back = sealed_app.send_task("spiral.retrieve_memory", args=["m0"],
                                kwargs={"tenant": "acme"}).get(timeout=60)
    assert back["content"] == secrets[0]

    client = redis.Redis.from_url(persisted_redis.url)
    try:
        # A control, in the clear: the same search must find it.
        control = f"control-{uuid.uuid4().hex}"
        with open_storage("redis", redis_url=persisted_redis.url[:-1] + "1") as plain:
            engine_over(plain).store(control, tenant="control")
        client.save()
        held = redis_contents(client)
        on_disk = files_under(persisted_redis.workdir)
    finally:
        client.close()
    assert leaked([control], held) == [control]
    assert leaked([control], on_disk) == [control]
    assert (persisted_redis.workdir / "dump.rdb").exists()
    assert list(persisted_redis.workdir.rglob("*.aof"))
    assert leaked(secrets + labels, held) == []
    assert leaked(secrets + labels, on_disk) == []
    with open_storage("redis", redis_url=persisted_redis.url, encryption=sealing(KEY)) as s:
        for tenant in TENANTS:
            assert assert_consistent(engine_over(s), tenant) == STORES // 2


@pytest.mark.parametrize(("keys", "says"), [
    ({}, "are sealed (key id {mine}) and this process has no encryption key"),
    (key_env(new_key()), "may be sealed under key id {mine}, which this process does not"),
], ids=["no key", "wrong key"])
def test_a_worker_without_the_store_key_refuses_to_start(
        sealed_workers: list[CeleryProcess], persisted_redis: RedisServer,
        worker_redis: RedisServer, tmp_path: Path, keys: dict[str, str], says: str) -> None:
    env = worker_env(persisted_redis.url, SPIRAL_BROKER_URL=worker_redis.url,
                     SPIRAL_RESULT_BACKEND=worker_redis.url, **keys)
    refused = start_worker(env, tmp_path, "keyless")
    assert refused.process is not None
    assert refused.process.wait(timeout=120) == 1
    log = refused.log()
    assert "this worker cannot open its storage: the store's memory records " \
           + says.format(mine=key_id_of(KEY)) in log
    assert "Traceback" not in log
    assert "ready." not in log  # it never served


def test_a_leveldb_folder_holds_no_plaintext_and_refuses_a_keyless_worker(
        tmp_path: Path) -> None:
    secrets = [f"diary-{uuid.uuid4().hex}" for _ in range(STORES)]
    control = f"control-{uuid.uuid4().hex}"
    with open_storage("level", db_path=tmp_path / "plain") as plain:
        engine_over(plain).store(control, tenant="control")
    with open_storage("level", db_path=tmp_path / "spiraldb", encryption=sealing(KEY)) as s:
        engine = engine_over(s)
        for n, secret in enumerate(secrets):
            engine.store(secret, tenant=TENANTS[n % 2], memory_id=f"m{n}")
    assert leaked([control], files_under(tmp_path / "plain")) == [control]
    assert leaked(secrets, files_under(tmp_path / "spiraldb")) == []
    # The embedded worker (LevelDB, threads pool) without the key stops at once.
    env = worker_env(None, SPIRAL_EMBEDDED_DIR=str(tmp_path / "embedded"),
                     SPIRAL_DB_PATH=str(tmp_path / "spiraldb"))
    refused = start_worker(env, tmp_path, "embedded", "--beat", pool="threads")
    assert refused.process is not None
    assert refused.process.wait(timeout=120) == 1
    assert (f"this worker cannot open its storage: the store's memory records are sealed "
            f"(key id {key_id_of(KEY)})") in refused.log()
