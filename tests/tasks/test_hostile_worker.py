"""Hostile input through a real `celery worker` (one node for the module, prefork,
storage on Redis): payloads sent by task name, and stored records damaged behind the
worker's back.

Every payload gets a result or `InvalidArgument` naming the argument; a refused one
changes nothing stored (a digest of the whole storage database); the invariant holds
after every call; the worker logs no traceback, retries nothing and loses no child.
A worker meeting a corrupt record answers `CorruptRecord` naming it (at once: never
retried), GC passes it by, a rebuild reports and quarantines it, and a worker started
over corrupt records serves.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult
from hypothesis import HealthCheck, given, settings

from spiral_tasks.config import Settings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import CorruptRecord
from spiral_tasks.factory import open_engine
from spiral_tasks.keys import TenantKeys, claim_key
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    child_pids,
    running_workers,
)
from spiral_tasks.testing.waiting import wait_until
from tests.corruption import DAMAGE, raw, write_raw
from tests.digests import Unchanged, redis_digest
from tests.invariants import assert_consistent
from tests.tasks.payloads import (
    FOUND,
    SEEDS,
    TENANTS,
    Payload,
    examples,
    payloads,
    refusal_problem,
    tenants_named,
)

WAIT = 60
#: What a worker log must never hold: a traceback, a retry, an unexpected error.
NEVER_LOGGED = ("Traceback", "Retry in", "raised unexpected", "WorkerLostError")


@pytest.fixture(scope="module")
def engine(lone_worker_env: dict[str, str]) -> Iterator[SpiralMemory]:
    """A direct view of what the worker wrote (its Redis storage database)."""
    opened = open_engine(Settings.from_env(lone_worker_env))
    yield opened
    opened.close()


def call(app: Celery, name: str, **kwargs: Any) -> Any:
    return app.send_task(name, kwargs=kwargs).get(timeout=WAIT, interval=0.01)


def transient(key: str) -> bool:
    """Keys that come and go without any call: a section's lock, the startup claim."""
    return key.endswith(":lock") or key.startswith("claim:")


def failure(result: AsyncResult[Any]) -> BaseException:
    """The error a call failed with, once it is final: never left retrying."""
    with pytest.raises(Exception) as caught:  # noqa: PT011 - which one is checked after
        result.get(timeout=WAIT, interval=0.01)
    assert result.state == "FAILURE", result.state
    return caught.value


def quiet_since(node: CeleryProcess, offset: int) -> str:
    log = node.log()[offset:]
    for mark in NEVER_LOGGED:
        assert mark not in log, f"{mark!r} in the worker log:\n{log[-3000:]}"
    return log


def test_hostile_payloads_get_a_result_or_a_named_refusal(
        lone_worker: tuple[Celery, CeleryProcess], engine: SpiralMemory) -> None:
    app, node = lone_worker
    for tenant in TENANTS:
        for memory_id in SEEDS:
            call(app, "spiral.store_memory", content=f"seed {memory_id}", depth="core",
                 tenant=tenant, memory_id=memory_id)
    storage = engine.storage.client  # type: ignore[attr-defined]
    children = sorted(child_pids(node.pid))
    offset = len(node.log())
    outcomes: Counter[str] = Counter()

    @settings(max_examples=250, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payloads())
    @examples(FOUND)
    def one(payload: Payload) -> None:
        unchanged.before()
        sent = app.send_task(payload.name, args=payload.args, kwargs=payload.kwargs)
        try:
            sent.get(timeout=WAIT, interval=0.01)
        except Exception as exc:  # which one is the point of the test
            assert sent.state == "FAILURE", f"{payload!r}: {sent.state}"
            problem = refusal_problem(payload, exc)
            assert problem is None, f"{payload!r}: {problem}"
            assert not unchanged.changed(), f"{payload!r} was refused but changed storage"
            outcomes["refused"] += 1
        else:
            unchanged.forget()
            outcomes["answered"] += 1
        for tenant in tenants_named(payload) & set(engine.tenants()):
            assert_consistent(engine, tenant)

    unchanged = Unchanged(lambda: redis_digest(storage, transient))
    one()
    for tenant in engine.tenants():
        assert_consistent(engine, tenant)
    quiet_since(node, offset)
    assert node.process is not None
    assert node.process.poll() is None
    assert sorted(child_pids(node.pid)) == children  # no pool child died or was replaced
    assert outcomes["answered"] >= 10, outcomes
    assert outcomes["refused"] >= 10, outcomes


# --- corrupt records ---------------------------------------------------------------------

DEPTHS = ["surface", "shallow", "deep", "core"]


def store_twelve(app: Celery, tenant: str) -> None:
    for i in range(12):
        call(app, "spiral.store_memory", content=f"{tenant} {i}", depth=DEPTHS[i % 4],
             tenant=tenant, memory_id=f"m{i}")


def core_spiral(engine: SpiralMemory, tenant: str) -> str:
    """The spiral of the tenant's core memories: no GC ever changes it."""
    record = engine.storage.get(TenantKeys(tenant).memory("m3"))
    spiral_id: str = record["spiral_id"]
    return spiral_id


def test_a_worker_meeting_corrupt_records_answers_at_once_and_keeps_serving(
        lone_worker: tuple[Celery, CeleryProcess], engine: SpiralMemory) -> None:
    app, node = lone_worker
    damaged, other = TenantKeys("damaged"), TenantKeys("damaged-2")
    store_twelve(app, damaged.tenant)
    store_twelve(app, other.tenant)
    children = sorted(child_pids(node.pid))
    offset = len(node.log())
    storage = engine.storage
    bad_json, bad_seal = damaged.memory("m1"), damaged.memory("m2")
    bad_spiral = other.spiral(core_spiral(engine, other.tenant))
    sealed = DAMAGE["bad ciphertext"](b"")
    write_raw(storage, bad_json, raw(storage, bad_json)[:30])
    write_raw(storage, bad_seal, sealed)
    write_raw(storage, bad_spiral, b'{"id": 7}')
    digest = redis_digest(storage.client, transient)  # type: ignore[attr-defined]

    refused = {
        "spiral.retrieve_memory": ({"memory_id": "m1", "tenant": "damaged"}, bad_json),
        "spiral.collect_memory": ({"memory_id": "m2", "tenant": "damaged"}, bad_seal),
        "spiral.store_memory": ({"content": "again", "memory_id": "m1",
                                 "tenant": "damaged"}, bad_json),
        "spiral.stats": ({"tenant": "damaged-2"}, bad_spiral),
    }
    for name, (kwargs, key) in refused.items():
        error = failure(app.send_task(name, kwargs=kwargs))
        assert isinstance(error, CorruptRecord), (name, error)
        assert error.key == key
        assert "spiral repair" in str(error)
    assert redis_digest(storage.client, transient) == digest  # type: ignore[attr-defined]

    # GC passes the corrupt records by and collects the rest of the due memories.
    report = call(app, "spiral.gc", tenant="damaged", time_budget_ms=5000)
    assert sorted(report["collected_ids"]) == ["m0", "m10", "m4", "m5", "m6", "m8", "m9"]
    call(app, "spiral.gc", time_budget_ms=5000)  # every tenant: answers whatever it meets

    rebuilt = call(app, "spiral.rebuild_stats")
    moved = {q["key"]: q for q in rebuilt["quarantined"]}
    assert set(moved) == {bad_json, bad_seal, bad_spiral}
    assert moved[bad_json]["reason"].startswith("not JSON")
    assert moved[bad_spiral]["reason"].startswith("not a spiral record")
    envelope = storage.get(moved[bad_seal]["moved_to"])
    assert base64.b64decode(envelope["raw_base64"]) == sealed
    assert call(app, "spiral.retrieve_memory", memory_id="m1", tenant="damaged") is None
    assert call(app, "spiral.stats", tenant="damaged-2")["consistent"]
    assert call(app, "spiral.store_memory", content="after", tenant="damaged-2")["created"]
    assert assert_consistent(engine, "damaged") == 3  # the core ones, m1 and m2 gone
    assert assert_consistent(engine, "damaged-2") >= 4
    assert call(app, "spiral.rebuild_stats")["quarantined"] == []

    log = quiet_since(node, offset)
    assert f"spiral.retrieve_memory: {bad_json}: stored record is corrupt" in log
    assert f"GC passed by a corrupt record: {bad_json}" in log
    assert sorted(child_pids(node.pid)) == children


def test_a_worker_started_over_corrupt_records_quarantines_them_and_serves(
        lone_worker: tuple[Celery, CeleryProcess], lone_worker_env: dict[str, str],
        engine: SpiralMemory, tmp_path: Path) -> None:
    """Its startup rebuild meets them: a worker child that died of it would be
    replaced only to die again."""
    app, _ = lone_worker
    keys = TenantKeys("damaged-3")
    store_twelve(app, keys.tenant)
    storage = engine.storage
    write_raw(storage, keys.memory("m7"), b"\x00\x01")
    write_raw(storage, keys.memory_count, b'"twelve"')
    wrong = TenantKeys("wrong-key")  # every record unreadable: refused, left alone
    store_twelve(app, wrong.tenant)
    for key in storage.keys(wrong.memories):
        write_raw(storage, key, b"\x01sealed under another key")
    # The lone worker's children claimed the startup rebuild for its window (60 s):
    # the late one's must run.
    storage.client.delete(claim_key("startup_rebuild"))  # type: ignore[attr-defined]
    env = {**lone_worker_env, "SPIRAL_STARTUP_REBUILD_WINDOW_S": "0.001"}
    with running_workers(app, env, tmp_path, ["late"]) as (late,):
        wait_until(lambda: not storage.keys(keys.memory("m7")), WAIT,
                   message="the late worker's startup rebuild to quarantine m7")
        assert {v["key"] for _, v in storage.scan(keys.quarantine)} == {
            keys.memory("m7"), keys.memory_count}
        assert assert_consistent(engine, keys.tenant) == 11
        assert call(app, "spiral.stats", tenant=keys.tenant)["total_memories"] == 11
        log = quiet_since(late, 0)
        assert f"startup rebuild quarantined {keys.memory('m7')}" in log
        assert "startup rebuild refused: tenant 'wrong-key': 12 of its 12" in log
        assert len(storage.keys(wrong.memories)) == 12
        report = call(app, "spiral.rebuild_stats", tenant=wrong.tenant)
        assert [r["tenant"] for r in report["refused"]] == [wrong.tenant]
