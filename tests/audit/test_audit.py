"""The audit log against real storage: what each operation appends, that an entry lands
with its operation or not at all, that concurrent writers keep one chain, and that
retention leaves a checkpoint the chain verifies from."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from spiral_tasks.audit.actor import Actor, acting
from spiral_tasks.audit.chain import Signer
from spiral_tasks.audit.journal import TRIM_EVERY
from spiral_tasks.audit.verify import entries, verify, verify_locked
from spiral_tasks.backup.restore import restore
from spiral_tasks.backup.snapshot import take
from spiral_tasks.config import AuditSettings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import LockLost
from spiral_tasks.factory import open_coordinator
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.base import Put, Storage
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.testing.engines import engine_over
from spiral_tasks.testing.waiting import wait_until
from tests.audit.tamper import raw_log
from tests.conftest import Clock, make_storage
from tests.invariants import assert_consistent

TENANT = "acme"


def log_of(storage: Storage, tenant: str = TENANT) -> list[dict[str, Any]]:
    return [entry for _, entry in entries(storage, tenant)]


def signer_of(engine: SpiralMemory) -> Signer:
    assert engine.sections.journal is not None
    return engine.sections.journal.signer


def test_every_operation_appends_its_entry(engine: SpiralMemory, tmp_path: Path) -> None:
    stored = [engine.store(f"memory {n}", tenant=TENANT, depth="surface").id
              for n in range(3)]
    engine.collect(stored[0], tenant=TENANT)
    engine.gc(tenant=TENANT, time_budget_ms=1000)  # nothing is due: no entry
    engine.rebuild_stats(TENANT)
    engine.rebuild_stats(TENANT, audit_as="repair")
    take(engine, tmp_path / "backup.spiral", source="test")
    restore(engine, tmp_path / "backup.spiral", replace=True)
    log = log_of(engine.storage)
    assert [e["op"] for e in log] == ["store", "store", "store", "collect", "rebuild",
                                      "repair", "backup", "restore"]
    assert [e["ids"] for e in log[:4]] == [[i] for i in stored] + [[stored[0]]]
    assert [e["seq"] for e in log] == list(range(1, 9))
    assert all(e["tenant"] == TENANT and e["worker"] for e in log)
    verdict = verify(engine.storage, signer_of(engine), TENANT)
    assert verdict.ok, verdict
    assert verdict.entries == 8
    assert_consistent(engine, TENANT)


def test_gc_names_what_it_collected(make_engine: Any, clock: Clock) -> None:
    engine = make_engine(retention_s=10)
    ids = [engine.store(f"m{n}", tenant=TENANT, depth="surface").id for n in range(4)]
    clock.advance(3600)
    report = engine.gc(tenant=TENANT, time_budget_ms=1000)
    assert sorted(report.collected_ids) == sorted(ids)
    # One entry per batch GC committed (a run's first batch is one memory, sized to
    # measure the cost of the next): together they name each collected id once.
    named = [i for e in log_of(engine.storage) if e["op"] == "gc" for i in e["ids"]]
    assert sorted(named) == sorted(ids)
    assert verify_locked(engine.sections, signer_of(engine), TENANT).ok


def test_reads_append_nothing(engine: SpiralMemory) -> None:
    memory_id = engine.store("kept", tenant=TENANT).id
    engine.retrieve(memory_id, tenant=TENANT)
    engine.stats(TENANT)
    engine.rebuild_stats(TENANT, dry_run=True)
    engine.rebuild_stats("never-used")
    assert [e["op"] for e in log_of(engine.storage)] == ["store"]
    assert log_of(engine.storage, "never-used") == []


def test_a_refused_batch_leaves_no_entry(engine: SpiralMemory) -> None:
    """The store's batch and its entry are one atomic write: a counter that cannot be
    incremented refuses both."""
    engine.store("first", tenant=TENANT)
    keys = TenantKeys(TENANT)
    engine.storage.set(keys.store_ticks, "not a counter")
    head = engine.storage.get(keys.audit_head)
    with pytest.raises(ValueError, match="integer counter"):
        engine.store("second", tenant=TENANT)
    assert [e["op"] for e in log_of(engine.storage)] == ["store"]
    assert engine.storage.get(keys.audit_head) == head


@pytest.mark.parametrize("task", [float("nan"), ("a", "tuple")])
def test_an_actor_json_cannot_keep_is_refused_with_nothing_written(
        engine: SpiralMemory, task: Any) -> None:
    """An entry of strings, ints and a finite time is encoded without a round trip;
    one naming anything else (a task id a client made up) still gets the round trip,
    which refuses what JSON would not give back."""
    engine.store("first", tenant=TENANT)
    head = engine.storage.get(TenantKeys(TENANT).audit_head)
    with acting(Actor(task=task, worker="w")), pytest.raises((TypeError, ValueError)):
        engine.store("second", tenant=TENANT)
    assert [e["op"] for e in log_of(engine.storage)] == ["store"]
    assert engine.storage.get(TenantKeys(TENANT).audit_head) == head
    assert_consistent(engine, TENANT)


def test_a_commit_refused_by_the_fence_leaves_no_entry(redis_url: str) -> None:
    """On Redis, a section whose lock was taken over commits nothing: not its writes,
    not its entry, not a new head."""
    storage = RedisStorage(redis_url)
    storage.init()
    engine = SpiralMemory(storage, open_coordinator(storage), sigil_secret="s")
    engine.store("first", tenant=TENANT)
    keys = TenantKeys(TENANT)
    head = storage.get(keys.audit_head)
    client = redis.Redis.from_url(redis_url)
    with engine.sections.enter(TENANT) as section:
        section.stage(Put(keys.memory("intruder"), {"id": "intruder"}))
        section.audit("store", ["intruder"])
        client.set(keys.lock, "another holder's token")  # the lock expired and was taken
        with pytest.raises(LockLost):
            section.commit(final=True)
    client.close()
    assert storage.get(keys.memory("intruder")) is None
    assert [e["ids"] for e in log_of(storage)] == [[log_of(storage)[0]["ids"][0]]]
    assert storage.get(keys.audit_head) == head
    storage.close()


def test_concurrent_stores_keep_one_chain_naming_each_caller(engine: SpiralMemory) -> None:
    """Threads storing into one tenant are combined into shared batches; each entry
    still names the caller whose store it records, and the chain holds."""
    stored: dict[str, str] = {}
    lock = threading.Lock()

    def producer(n: int) -> None:
        with acting(Actor(task=f"task-{n}", worker="test")):
            for i in range(10):
                memory_id = engine.store(f"{n}/{i}", tenant=TENANT).id
                with lock:
                    stored[memory_id] = f"task-{n}"

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    named = {i: e["task"] for e in log_of(engine.storage) if e["op"] == "store"
             for i in e["ids"]}
    assert named == stored
    assert verify(engine.storage, signer_of(engine), TENANT).ok
    assert assert_consistent(engine, TENANT) == 40


def test_two_engines_on_one_redis_share_one_chain(redis_url: str) -> None:
    """Two processes' engines (separate connections, caches and locks' clients) commit
    into one tenant; the tenant's lock orders their entries into one chain."""
    engines = []
    for _ in range(2):
        storage = RedisStorage(redis_url)
        storage.init()
        engines.append(SpiralMemory(storage, open_coordinator(storage), sigil_secret="s"))

    def producer(engine: SpiralMemory) -> None:
        for i in range(25):
            engine.store(f"m{i}", tenant=TENANT)

    threads = [threading.Thread(target=producer, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verdict = verify(engines[0].storage, signer_of(engines[1]), TENANT)
    assert verdict.ok, verdict
    assert sum(len(e["ids"]) for e in log_of(engines[0].storage)) == 50
    assert assert_consistent(engines[0], TENANT) == 50
    for engine in engines:
        engine.close()


def test_retention_trims_to_a_signed_checkpoint(storage: Storage, clock: Clock) -> None:
    engine = SpiralMemory(storage, open_coordinator(storage), sigil_secret="s", clock=clock,
                          audit=AuditSettings(retention_s=60))
    for i in range(TRIM_EVERY + 50):
        engine.store(f"old {i}", tenant=TENANT)
    clock.advance(120)  # every entry so far is past retention
    for i in range(60):
        engine.store(f"new {i}", tenant=TENANT)
    log = log_of(storage)
    keys = TenantKeys(TENANT)
    point = storage.get(keys.audit_checkpoint)
    assert point["seq"] == TRIM_EVERY + 50
    assert log[0]["seq"] == TRIM_EVERY + 51
    assert len(log) == 60
    verdict = verify(storage, signer_of(engine), TENANT)
    assert verdict.ok, verdict
    assert verdict.checkpoint == TRIM_EVERY + 50
    storage.set(keys.audit_checkpoint, {**point, "seq": point["seq"] - 1})
    forged = verify(storage, signer_of(engine), TENANT)
    assert forged.first_bad is not None
    assert "checkpoint's signature does not verify" in forged.first_bad.why


def test_audit_off_appends_nothing(storage: Storage) -> None:
    engine = SpiralMemory(storage, open_coordinator(storage), sigil_secret="s",
                          audit=AuditSettings(enabled=False))
    engine.store("unrecorded", tenant=TENANT)
    assert log_of(storage) == []
    assert storage.get(TenantKeys(TENANT).audit_head) is None


STORING = """
import sys
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.testing.engines import engine_over
storage = open_storage(sys.argv[1], db_path=sys.argv[2], redis_url=sys.argv[3] or None)
engine = engine_over(storage)
n = 0
while True:
    engine.store(f"memory {n}", tenant="acme")
    n += 1
"""


@pytest.mark.parametrize("backend", ["level", "redis"])
def test_a_process_killed_mid_store_leaves_operations_and_entries_alike(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """SIGKILL a process storing as fast as it can: whatever commit it was in landed
    whole or not at all, so the memories stored are exactly those the log names."""
    url = request.getfixturevalue("redis_url") if backend == "redis" else ""
    path = tmp_path / "spiraldb"
    process = subprocess.Popen([sys.executable, "-c", STORING, backend, str(path), url])
    try:
        if backend == "redis":
            watcher = RedisStorage(url)
            watcher.init()
            wait_until(lambda: len(raw_log(watcher, TENANT)) >= 200, timeout=60)
            watcher.close()
        else:
            # LevelDB admits one process: watch its write-ahead log grow instead
            # (200 kB is some hundreds of stores).
            marker = path / "CURRENT"
            wait_until(lambda: marker.exists() and sum(
                f.stat().st_size for f in path.glob("*.log")) > 200_000, timeout=60)
    finally:
        process.kill()
        process.wait(timeout=30)
    storage = make_storage(backend, tmp_path, request)
    engine = engine_over(storage)
    logged = {i for e in log_of(storage) for i in e["ids"]}
    stored = {key.rsplit(":", 1)[1] for key in storage.keys(TenantKeys(TENANT).memories)}
    assert logged == stored
    assert len(stored) > 0
    verdict = verify(storage, signer_of(engine), TENANT)
    assert verdict.ok, verdict
    assert assert_consistent(engine, TENANT) == len(stored)
    storage.close()
