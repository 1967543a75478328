"""Corrupt stored records, on every backend: bad bytes written straight into the
backend. A rebuild reports each (key, reason) and moves it to the tenant's quarantine,
the invariant then holds over the records left; operations that meet one fail with
`CorruptRecord` naming it (nothing written) or, for GC, pass it by."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spiral_tasks.backup import restore, take
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import CorruptRecord
from spiral_tasks.keys import GC_CURSOR_KEY, TenantKeys
from spiral_tasks.quarantine import MASS_UNREADABLE_MIN
from spiral_tasks.storage.memory import MemoryStorage
from spiral_tasks.tasks import runtime
from spiral_tasks.testing.engines import engine_over
from tests.conftest import Clock, EngineFactory
from tests.corruption import DAMAGE, raw, write_raw
from tests.digests import storage_digest
from tests.invariants import assert_consistent

KEYS = TenantKeys("default")
DEPTHS = ["surface", "shallow", "deep", "core"]


def populate(engine: SpiralMemory, count: int = 12, tenant: str = "default") -> list[str]:
    return [engine.store(f"m{i} é", depth=DEPTHS[i % 4], tenant=tenant,
                         memory_id=f"m{i}").stored.id for i in range(count)]


def memory_json(engine: SpiralMemory, memory_id: str) -> dict[str, Any]:
    record: dict[str, Any] = engine.storage.get(KEYS.memory(memory_id))
    return record


def quarantined(engine: SpiralMemory, tenant: str = "default") -> dict[str, Any]:
    """The tenant's quarantine: original key -> envelope."""
    return {v["key"]: v for _, v in engine.storage.scan(TenantKeys(tenant).quarantine)}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_corrupt_memory_record_is_quarantined_and_no_longer_counts(
        make_engine: EngineFactory, damage: str) -> None:
    engine = make_engine()
    populate(engine)
    key = KEYS.memory("m5")
    original = raw(engine.storage, key)
    bad = DAMAGE[damage](original)
    write_raw(engine.storage, key, bad)

    fresh = make_engine()  # another process: nothing cached
    report = fresh.rebuild_stats()
    assert [q.key for q in report.quarantined] == [key]
    assert report.quarantined[0].reason
    assert not report.clean
    assert fresh.storage.get(key) is None
    kept = quarantined(fresh)[key]
    assert kept["reason"] == report.quarantined[0].reason
    if "raw_base64" in kept:
        assert base64.b64decode(kept["raw_base64"]) == bad
    else:
        assert orjson.dumps(kept["value"]) == orjson.dumps(orjson.loads(bad))
    assert report.to_json()["quarantined"] == [q.to_json() for q in report.quarantined]
    assert fresh.retrieve("m5") is None
    assert assert_consistent(fresh) == 11
    assert fresh.rebuild_stats().clean
    assert fresh.retrieve("m6") is not None
    assert fresh.store("after", memory_id="m5").created  # the id is free again
    assert assert_consistent(fresh) == 12


def test_records_of_every_kind_are_quarantined_in_one_rebuild(
        make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine()
    populate(engine)
    engine.collect("m11")
    spiral = engine.stats().spirals[0]
    m0 = memory_json(engine, "m0")
    wrong_types = {**memory_json(engine, "m2"), "position": {"index": "zero"}}
    corrupt = {
        KEYS.memory("m0"): b'{"id": "m0", ',                        # bad JSON
        KEYS.memory("m1"): raw(engine.storage, KEYS.memory("m1"))[:40],  # truncated
        KEYS.memory("m2"): orjson.dumps(wrong_types),               # wrong types
        KEYS.memory("m3"): orjson.dumps(m0),                        # another's record
        KEYS.memory("m4"): DAMAGE["bad ciphertext"](b""),
        KEYS.spiral(spiral.id): b"\xff\xfe",
        KEYS.spiral_count(spiral.id): b'"many"',
        KEYS.memory_count: b"12.5",
        KEYS.sigil(memory_json(engine, "m6")["sigil"]): b"[]",
        KEYS.tombstone("m11"): b"{",
        KEYS.store_ticks: b"tick",
    }
    expiry = dict(engine.storage.index_range(KEYS.tombstone_queue))["m11"]
    for key, data in corrupt.items():
        write_raw(engine.storage, key, data)

    clock.advance(1)
    fresh = make_engine()
    with pytest.raises(CorruptRecord) as caught:
        fresh.stats()
    assert caught.value.key in corrupt
    report = fresh.rebuild_stats()
    assert {q.key: q.reason for q in report.quarantined}.keys() == corrupt.keys()
    reasons = {q.key: q.reason for q in report.quarantined}
    assert "not JSON" in reasons[KEYS.memory("m0")]
    assert "position: must be a JSON object" not in reasons[KEYS.memory("m2")]
    assert "index" in reasons[KEYS.memory("m2")]
    assert "holds memory 'm0'" in reasons[KEYS.memory("m3")]
    assert reasons[KEYS.spiral_count(spiral.id)] == "does not hold an integer counter"
    assert set(quarantined(fresh)) == corrupt.keys()
    # Five memories went: the spiral, counters, sigils and queue agree with the rest.
    assert assert_consistent(fresh) == 11 - 5
    assert fresh.storage.get(KEYS.spiral(spiral.id)) is not None  # adopted again
    assert fresh.storage.get(KEYS.tombstone("m11")) == expiry  # still collected
    assert not fresh.store("late", memory_id="m11").created
    assert fresh.storage.get(KEYS.sigil(memory_json(fresh, "m6")["sigil"])) == "m6"
    assert fresh.rebuild_stats().clean
    for memory_id in ("m5", "m6", "m7", "m8", "m9", "m10"):
        assert fresh.retrieve(memory_id) is not None
    fresh.store("more")
    assert assert_consistent(fresh) == 7


def test_a_memory_naming_a_spiral_or_sigil_no_key_can_hold_is_corrupt(
        make_engine: EngineFactory) -> None:
    """Both become parts of keys when the rebuild writes the spiral, the counter and
    the sigil entry: a rebuild must not stop on a key it cannot write."""
    engine = make_engine()
    populate(engine)
    for memory_id, change in (("m1", {"spiral_id": "s" * 2000}), ("m2", {"sigil": ""}),
                              ("m5", {"spiral_id": "a b"})):
        record = {**memory_json(engine, memory_id), **change}
        write_raw(engine.storage, KEYS.memory(memory_id), orjson.dumps(record))
    report = make_engine().rebuild_stats()
    assert {q.key for q in report.quarantined} == {KEYS.memory(m) for m in ("m1", "m2", "m5")}
    assert all("is not an id" in q.reason for q in report.quarantined)
    assert assert_consistent(engine) == 9


def test_quarantined_records_are_backed_up_and_restored_like_any_key(
        make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine()
    populate(engine)
    write_raw(engine.storage, KEYS.memory("m1"), b"\x00")
    engine.rebuild_stats()
    take(engine, tmp_path / "b.jsonl", source="test")
    target = engine_over(MemoryStorage())
    restore(target, tmp_path / "b.jsonl")
    assert quarantined(target) == quarantined(engine)
    assert target.rebuild_stats().clean
    assert assert_consistent(target) == 11


@pytest.mark.parametrize("damage", ["not UTF-8", "wrong type"])
def test_a_backup_of_a_corrupt_store_is_refused_naming_the_record(
        make_engine: EngineFactory, tmp_path: Path, damage: str) -> None:
    """A wrong-typed record once went into the file, which a restore then refused."""
    engine = make_engine()
    populate(engine)
    write_raw(engine.storage, KEYS.memory("m4"), DAMAGE[damage](b""))
    with pytest.raises(CorruptRecord) as caught:
        take(make_engine(), tmp_path / "b.jsonl", source="test")
    assert caught.value.key == KEYS.memory("m4")
    assert not (tmp_path / "b.jsonl").exists()
    make_engine().rebuild_stats()
    take(make_engine(), tmp_path / "b.jsonl", source="test")
    restore(engine_over(MemoryStorage()), tmp_path / "b.jsonl")


def test_a_dry_run_reports_what_it_would_quarantine_and_writes_nothing(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    populate(engine)
    write_raw(engine.storage, KEYS.memory("m1"), b"{")
    before = storage_digest(engine.storage)
    report = make_engine().rebuild_stats(dry_run=True)
    assert [q.key for q in report.quarantined] == [KEYS.memory("m1")]
    assert storage_digest(engine.storage) == before


def test_operations_meeting_a_corrupt_record_fail_naming_it_and_write_nothing(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    populate(engine)
    bad = KEYS.memory("m3")
    write_raw(engine.storage, bad, b'{"truncated": ')
    fresh = make_engine()
    calls: list[Callable[[], object]] = [
        lambda: fresh.retrieve("m3"),
        lambda: fresh.collect("m3"),
        lambda: fresh.store("again", memory_id="m3"),
    ]
    for call in calls:
        before = storage_digest(fresh.storage)
        with pytest.raises(CorruptRecord) as caught:
            call()
        assert caught.value.key == bad
        assert bad in str(caught.value)
        assert "spiral repair" in str(caught.value)
        assert storage_digest(fresh.storage) == before
    # What does not need the record works: other memories, links to it (it exists).
    assert fresh.retrieve("m4") is not None
    assert fresh.store("linked", associations=["m3"]).created
    assert fresh.stats().consistent


def test_a_corrupt_spiral_or_total_stops_stores_with_a_clear_error(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    populate(engine)
    spiral = engine.stats().spirals[0]
    for key in (KEYS.spiral(spiral.id), KEYS.memory_count, KEYS.spiral_count(spiral.id)):
        good = raw(engine.storage, key)
        write_raw(engine.storage, key, b'"garbage"')
        fresh = make_engine()
        before = storage_digest(fresh.storage)
        stored_into = spiral.type.value
        depth = {"archimedean": "surface", "fibonacci": "shallow", "golden": "deep",
                 "logarithmic": "core"}[stored_into]
        with pytest.raises(CorruptRecord) as caught:
            fresh.store("into the damaged spiral", depth=depth)
        assert caught.value.key == key
        assert storage_digest(fresh.storage) == before
        write_raw(engine.storage, key, good)
    assert assert_consistent(make_engine()) == 12


def test_gc_passes_a_corrupt_record_by_and_collects_the_rest(
        make_engine: EngineFactory, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine()
    ids = populate(engine)
    collectable = [m for i, m in enumerate(ids) if DEPTHS[i % 4] != "core"]
    head = engine.storage.index_range(KEYS.gc_queue, 1)[0][0]
    write_raw(engine.storage, KEYS.memory(head), b"\x00")
    clock.advance(10**9)  # every deadline has passed
    fresh = make_engine()
    with caplog.at_level(logging.WARNING):
        report = fresh.gc(time_budget_ms=1000, tenant="default")
    assert sorted(report.collected_ids) == sorted(m for m in collectable if m != head)
    assert KEYS.memory(head) in caplog.text
    assert fresh.storage.index_range(KEYS.gc_queue) == []
    left = {KEYS.memory(m) for i, m in enumerate(ids) if DEPTHS[i % 4] == "core"}
    assert set(fresh.storage.keys(KEYS.memories)) == left | {KEYS.memory(head)}
    assert [q.key for q in fresh.rebuild_stats().quarantined] == [KEYS.memory(head)]
    assert assert_consistent(fresh) == 3  # the core memories


def test_gc_over_every_tenant_passes_a_damaged_tenant_over(
        make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine()
    populate(engine, tenant="a")
    populate(engine, tenant="b")
    write_raw(engine.storage, TenantKeys("a").memory_count, b"[")
    write_raw(engine.storage, GC_CURSOR_KEY, b"\xc3")
    clock.advance(10**9)
    report = make_engine().gc(time_budget_ms=2000)
    assert not report.complete
    assert len(report.collected_ids) == 9  # all of b's collectable ones
    assert len(make_engine().storage.keys(TenantKeys("a").memories)) == 12
    assert engine.storage.get(GC_CURSOR_KEY) in ("a", "b")  # written again


def test_a_rebuild_refuses_when_most_records_do_not_decode(
        make_engine: EngineFactory) -> None:
    """What a wrong key looks like: every record unreadable. Moving them all aside
    would empty the tenant, so nothing is moved."""
    engine = make_engine()
    ids = populate(engine, count=MASS_UNREADABLE_MIN + 2)
    for memory_id in ids[1:]:
        write_raw(engine.storage, KEYS.memory(memory_id), b"\x01sealed under another key")
    populate(engine, tenant="other")
    write_raw(engine.storage, TenantKeys("other").memory("m0"), b"{")
    before = storage_digest(engine.storage)
    report = make_engine().rebuild_stats(dry_run=True)
    assert [r.tenant for r in report.refused] == ["default"]
    assert "wrong key or codec" in report.refused[0].reason
    assert storage_digest(engine.storage) == before
    report = make_engine().rebuild_stats()
    assert [r.tenant for r in report.refused] == ["default"]
    assert report.to_json()["refused"] == [r.to_json() for r in report.refused]
    assert not report.clean
    # The other tenant was rebuilt; the refused one was left exactly as it was.
    assert [q.key for q in report.quarantined] == [TenantKeys("other").memory("m0")]
    assert sorted(engine.storage.keys(KEYS.memories)) == sorted(
        KEYS.memory(m) for m in ids)


def test_a_startup_rebuild_that_fails_leaves_the_worker_serving(
        make_engine: EngineFactory, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine()
    ids = populate(engine, count=MASS_UNREADABLE_MIN + 2)
    for memory_id in ids:
        write_raw(engine.storage, KEYS.memory(memory_id), b"\x01")
    with caplog.at_level(logging.ERROR):
        assert runtime.startup_rebuild(make_engine()) is True
    assert "startup rebuild refused: tenant 'default': 12 of its 12" in caplog.text


def test_a_startup_rebuild_whose_lock_stays_busy_is_logged_and_passed(
        make_engine: EngineFactory, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine()
    populate(engine)
    with engine.sections.enter("default"), caplog.at_level(logging.ERROR):
        assert runtime.startup_rebuild(make_engine(wait_s=0.01)) is False
    assert "startup rebuild failed, serving anyway: LockTimeout" in caplog.text


def test_a_startup_rebuild_quarantines_and_logs_each_record(
        make_engine: EngineFactory, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine()
    populate(engine)
    write_raw(engine.storage, KEYS.memory("m2"), b"{")
    with caplog.at_level(logging.ERROR):
        assert runtime.startup_rebuild(make_engine()) is True
    assert f"startup rebuild quarantined {KEYS.memory('m2')} (not JSON" in caplog.text
    assert assert_consistent(make_engine()) == 11


# --- the same, by property: any bytes over any record --------------------------------

RECORD_KINDS = ["memory", "spiral", "spiral_count", "memory_count", "sigil", "tombstone",
                "store_ticks", "gc_cursor"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, int, Callable[[bytes], bytes]]:
    kind = draw(st.sampled_from(RECORD_KINDS))
    which = draw(st.integers(0, 11))
    how = draw(st.sampled_from(["bytes", "json", "truncate", "field"]))
    if how == "bytes":
        data = draw(st.binary(max_size=64))
        return kind, which, lambda _: data
    if how == "json":
        value = draw(json_values)
        return kind, which, lambda _: orjson.dumps(value)
    if how == "truncate":
        cut = draw(st.integers(0, 400))
        return kind, which, lambda original: original[:cut]
    name = draw(st.sampled_from(["id", "tenant", "depth", "position", "holes", "node_count",
                                 "spiral_id", "sigil", "content", "strength", "type"]))
    value = draw(json_values)

    def replace_field(original: bytes) -> bytes:
        try:
            record = orjson.loads(original)
        except orjson.JSONDecodeError:
            return original
        if isinstance(record, dict):
            record[name] = value
        return orjson.dumps(record)

    return kind, which, replace_field


def key_of(engine: SpiralMemory, kind: str, which: int) -> str:
    memory = memory_json(engine, f"m{which % 11}")
    return {
        "memory": KEYS.memory(memory["id"]),
        "spiral": KEYS.spiral(memory["spiral_id"]),
        "spiral_count": KEYS.spiral_count(memory["spiral_id"]),
        "memory_count": KEYS.memory_count,
        "sigil": KEYS.sigil(memory["sigil"]),
        "tombstone": KEYS.tombstone("m11"),
        "store_ticks": KEYS.store_ticks,
        "gc_cursor": GC_CURSOR_KEY,
    }[kind]


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(damage(), min_size=1, max_size=3))
def test_whatever_bytes_a_record_holds_rebuild_leaves_a_consistent_store(
        damages: list[tuple[str, int, Callable[[bytes], bytes]]]) -> None:
    """In process (fast, many examples): any damage to any records; the engine's
    operations never fail otherwise than with CorruptRecord, and a rebuild leaves the
    invariant holding, a second rebuild clean, every memory readable or quarantined."""
    storage = MemoryStorage()
    clock = Clock()
    engine = engine_over(storage, clock=clock)
    populate(engine)
    engine.collect("m11")
    engine.gc(time_budget_ms=5)  # writes the GC cursor
    targets = [(key_of(engine, kind, which), how) for kind, which, how in damages]
    for key, how in targets:
        write_raw(storage, key, how(raw(storage, key)))

    fresh = engine_over(storage, clock=clock)
    refused: list[CorruptRecord] = []
    for memory_id in ("m0", "m5", "m11"):
        try:
            fresh.retrieve(memory_id)
            fresh.store("s", memory_id=memory_id)
        except CorruptRecord as exc:
            refused.append(exc)
    assert all(exc.key.startswith(KEYS.namespace) for exc in refused)
    clock.advance(10**9)
    try:
        fresh.gc(time_budget_ms=50)
    except CorruptRecord as exc:  # never: GC passes corrupt records and tenants by
        raise AssertionError(f"GC raised {exc}") from exc
    report = fresh.rebuild_stats()
    assert {q.key for q in report.quarantined} == set(quarantined(fresh))
    assert fresh.rebuild_stats().clean
    total = assert_consistent(fresh)
    left = {k.rsplit(":", 1)[1] for k in storage.keys(KEYS.memories)}
    assert total == len(left)
    for memory_id in left:
        assert fresh.retrieve(memory_id) is not None
