"""The rebuild's fast check of a memory record (`records.memory_row`) agrees with the
careful, field-by-field one: it passes only records the careful check passes, gives
the same fields of them as `row_of` does of what `memory_record` returns, and passes a
record as the engine writes it; and a rebuild over damaged records reports exactly
what it reports with the fast check switched off."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spiral_tasks import records
from spiral_tasks.errors import CorruptRecord
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage.memory import MemoryStorage
from spiral_tasks.testing.engines import engine_over
from tests.conftest import Clock
from tests.corruption import raw, write_raw
from tests.test_record_checks import GOOD, KEY, careful, spoilt

PREFIX = TenantKeys("acme").memories
KNOWN = {GOOD["spiral_id"]}  # a spiral id found an id already (the rebuild's `slots`)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["deep", "core", "acme", "m1", "spiral_1", "4799090435ba727efb"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                inner, max_size=3),
    max_leaves=6)
FIELDS = [*GOOD, *(f"position.{p}" for p in GOOD["position"])]


def agree(value: Any, spiral_ids: set[str] | frozenset[str] = frozenset()) -> None:
    """The fast check passes `value` only if the careful one does, with the same
    fields, and `memory_record` passes it exactly when the careful check does."""
    try:
        careful(KEY, value)
        refused = False
    except CorruptRecord:
        refused = True
    row = records.memory_row(KEY, value, PREFIX, "acme", spiral_ids)
    if row is not None:
        assert not refused, value
        assert row == records.row_of(records.memory_record(KEY, value))
    try:
        records.memory_record(KEY, value)
        assert not refused, value
    except CorruptRecord:
        assert refused, value


@pytest.mark.parametrize(("case", "value"), spoilt(), ids=[c for c, _ in spoilt()])
def test_the_fast_check_passes_only_what_the_careful_one_passes(case: str,
                                                                value: Any) -> None:
    agree(value)
    agree(value, KNOWN)


def test_a_record_as_the_engine_writes_it_passes_fast() -> None:
    row = records.memory_row(KEY, copy.deepcopy(GOOD), PREFIX, "acme", KNOWN)
    assert row == records.row_of(GOOD)
    assert records.memory_row(KEY, copy.deepcopy(GOOD), PREFIX, "acme") == row
    # Numbers the careful check passes but a float sum cannot hold: the careful way.
    huge = {**GOOD, "created": 1.7e308, "last_accessed": 1.7e308}
    assert records.memory_row(KEY, huge, PREFIX, "acme") is None
    assert records.memory_record(KEY, huge) is huge


def place(record: dict[str, Any], name: str) -> tuple[Any, str]:
    """Where field `name` is (a position field: in the position, whatever it holds)."""
    if name.startswith("position."):
        return record.get("position"), name[len("position."):]
    return record, name


#: Up to three fields of a record replaced (None: removed), for `damage`.
CHANGES = st.lists(st.tuples(st.sampled_from(FIELDS), st.none() | JSON), min_size=1,
                   max_size=3)
#: Fields no memory record has.
EXTRA_FIELDS = st.dictionaries(st.text(max_size=8), JSON, max_size=2)


def damage(record: dict[str, Any], changes: list[tuple[str, Any]]) -> None:
    """Each field of `changes` replaced in `record`, or removed where its value is None
    (a position field only while the position is still an object)."""
    for name, value in changes:
        where, field = place(record, name)
        if type(where) is not dict:
            continue  # the position was replaced already
        if value is None:
            where.pop(field, None)
        else:
            where[field] = value


def damaged_tenant(damages: list[tuple[int, str, Any]]) -> tuple[MemoryStorage, Clock]:
    """24 memories of every depth, then record `m<i>` damaged for each (i, field,
    value) of `damages`, as `damage` does."""
    storage, clock = MemoryStorage(), Clock()
    engine = engine_over(storage, clock=clock)
    depths = ["surface", "shallow", "deep", "core"]
    for i in range(24):
        engine.store(f"m{i}", depth=depths[i % 4], memory_id=f"m{i}")
    keys = TenantKeys("default")
    for which, name, value in damages:
        key = keys.memory(f"m{which}")
        record = orjson.loads(raw(storage, key))
        damage(record, [(name, value)])
        write_raw(storage, key, orjson.dumps(record))
    return storage, clock


@settings(max_examples=500, deadline=None)
@given(CHANGES, EXTRA_FIELDS)
def test_any_fields_replaced_or_removed_fast_and_careful_agree(
        changes: list[tuple[str, Any]], extra: dict[str, Any]) -> None:
    """None stands for a field removed."""
    record = copy.deepcopy(GOOD)
    damage(record, changes)
    agree(record)
    agree(record, KNOWN)
    agree({**extra, **record})


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 400), st.integers(0, 8), st.binary(max_size=8))
def test_any_bytes_spliced_into_a_record_fast_and_careful_agree(
        at: int, cut: int, splice: bytes) -> None:
    data = orjson.dumps(GOOD)
    at = at % len(data)
    try:
        value = orjson.loads(data[:at] + splice + data[at + cut:])
    except orjson.JSONDecodeError:
        return
    agree(value)
    agree(value, KNOWN)


def report_of(storage: MemoryStorage, clock: Clock) -> dict[str, Any]:
    report = engine_over(storage, clock=clock).rebuild_stats(dry_run=True).to_json()
    report.pop("duration_ms")
    return report


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 23), st.sampled_from(FIELDS), st.none() | JSON),
                max_size=6))
def test_a_rebuild_reports_the_same_with_and_without_the_fast_check(
        damages: list[tuple[int, str, Any]]) -> None:
    """Records damaged field by field (same slot, another spiral, a bad sigil...):
    the dry run's report, quarantines and reasons included, is the same whether each
    node went the fast way or the careful way."""
    storage, clock = damaged_tenant(damages)
    fast = report_of(storage, clock)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(records, "memory_row", lambda *_: None)  # every node the careful way
        assert report_of(storage, clock) == fast
