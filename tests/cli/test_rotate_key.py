"""spiral rotate-key, as a process: on LevelDB with the worker stopped, and on Redis
while real workers keep storing, killed with SIGKILL half-way and run again."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import redis

from spiral_tasks.keys import TenantKeys, sealing_marker
from spiral_tasks.security import envelope
from spiral_tasks.security.atrest import read_markers
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import running_workers, worker_env
from spiral_tasks.testing.encryption import key_env, key_id_of, new_key, sealing
from spiral_tasks.testing.engines import engine_over
from spiral_tasks.testing.waiting import wait_until
from tests.cli.programs import SCRIPTS, json_out, one_line, spiral
from tests.contents import populate
from tests.invariants import assert_consistent

#: Many small tenants, so a rotation killed after its first has most still to do.
TENANTS = [f"t{n:02d}" for n in range(40)]
PER_TENANT = 30
#: Stores the workers serve while the rotation runs.
DURING = 120


def key_ids(storage_url: str, tenants: list[str]) -> dict[str | None, int]:
    """How many memory records are under each key id, read raw off Redis."""
    client = redis.Redis.from_url(storage_url)
    found: dict[str | None, int] = {}
    try:
        for tenant in tenants:
            names = client.zrangebylex(f"__dir__:{{{tenant}}}", "-", "+")
            records = [n for n in names if b":mem:" in n]
            for raw in client.mget(records) if records else []:
                key_id = envelope.key_id_of(raw)
                found[key_id] = found.get(key_id, 0) + 1
    finally:
        client.close()
    return found


def test_rotate_key_on_leveldb_step_by_step(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    with open_storage("level", db_path=tmp_path / "spiraldb", encryption=sealing(old)) as s:
        populate(engine_over(s), count=20)
    no_key = spiral(tmp_path, "rotate-key")
    assert no_key.returncode == 2
    assert "needs SPIRAL_ENCRYPTION_KEY" in one_line(no_key)
    refused = spiral(tmp_path, "stats", "--tenant", "acme", **key_env(new))
    assert refused.returncode == 1
    assert f"may be sealed under key id {key_id_of(old)}" in one_line(refused)
    dry = spiral(tmp_path, "rotate-key", "--dry-run", **key_env(new, old))
    assert dry.returncode == 1, dry.stderr
    assert "would re-seal 34 memory record(s) in 2 tenant(s)" in dry.stdout
    rotated = spiral(tmp_path, "rotate-key", **key_env(new, old))
    assert rotated.returncode == 0, rotated.stderr
    assert f"tenant acme: 17 re-sealed (17 from key id {key_id_of(old)})" in rotated.stdout
    assert (f"done: every memory record is sealed under {key_id_of(new)}, the store forgot "
            f"{sealing_marker(key_id_of(old))}") in rotated.stdout
    assert spiral(tmp_path, "stats", "--tenant", "acme", **key_env(new)).returncode == 0
    old_only = spiral(tmp_path, "stats", "--tenant", "acme", **key_env(old))
    assert f"may be sealed under key id {key_id_of(new)}" in one_line(old_only)
    again = json_out(spiral(tmp_path, "rotate-key", "--json", **key_env(new)))
    assert again["complete"] is True
    assert again["resealed"] == 0
    assert again["current"] == 34


def test_rotate_key_killed_mid_run_under_live_workers_resumes(
        redis_url: str, tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    with open_storage("redis", redis_url=redis_url, encryption=sealing(old)) as storage:
        engine = engine_over(storage)
        for tenant in TENANTS:
            for n in range(PER_TENANT):
                engine.store(f"{tenant} memory {n}", tenant=tenant, memory_id=f"m{n}")
    # Workers seal with the new key and still open the old: the runbook's step 2.
    both = key_env(new, old)
    env = worker_env(redis_url, **both)
    app = create_app(env)
    answers: list[object] = []

    def produce() -> None:
        sent = [app.send_task("spiral.store_memory", kwargs={
            "content": f"during {n}", "tenant": TENANTS[n % len(TENANTS)],
            "memory_id": f"during{n}"}) for n in range(DURING)]
        answers.extend(result.get(timeout=180) for result in sent)

    with running_workers(app, env, tmp_path, ["rotating"]):
        producer = threading.Thread(target=produce)
        producer.start()
        rotation = subprocess.Popen([str(SCRIPTS / "spiral"), "rotate-key", "--json"],
                                    cwd=tmp_path, env=worker_env(redis_url, **both),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = TenantKeys(TENANTS[0]).memory("m0")
        client = redis.Redis.from_url(redis_url)
        try:
            wait_until(lambda: envelope.key_id_of(client.get(first) or b"")
                       == key_id_of(new), 120, interval=0.001,
                       message="the rotation to re-seal its first tenant")
        finally:
            client.close()
        os.kill(rotation.pid, signal.SIGKILL)
        assert rotation.wait(timeout=30) == -signal.SIGKILL
        halfway = key_ids(redis_url, TENANTS)
        assert halfway.get(key_id_of(old), 0) > 0, halfway  # killed with work left
        assert halfway.get(key_id_of(new), 0) >= PER_TENANT

        rerun = spiral(tmp_path, "rotate-key", "--json", redis_url=redis_url, **both)
        assert rerun.returncode == 0, rerun.stderr
        report = json_out(rerun)
        assert report["complete"] is True
        assert report["markers_removed"] == [sealing_marker(key_id_of(old))]
        producer.join(timeout=240)
        assert not producer.is_alive()
    assert len(answers) == DURING
    assert all(isinstance(a, dict) and a["created"] for a in answers)
    assert key_ids(redis_url, TENANTS) == {key_id_of(new): len(TENANTS) * PER_TENANT + DURING}
    # Everything opens under the new key alone, and the invariant holds in every tenant.
    with open_storage("redis", redis_url=redis_url, encryption=sealing(new)) as storage:
        assert read_markers(storage).key_ids == {key_id_of(new)}
        engine = engine_over(storage)
        total = sum(assert_consistent(engine, tenant) for tenant in TENANTS)
        assert total == len(TENANTS) * PER_TENANT + DURING
        memory = engine.retrieve("m0", tenant=TENANTS[-1])
        assert memory is not None
        assert memory.content == f"{TENANTS[-1]} memory 0"
