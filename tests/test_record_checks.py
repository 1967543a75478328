"""The rebuild's quick check of a memory record (`records.plainly_memory`) never passes
a record the careful, field-by-field check refuses: every field of a record the engine
wrote, spoilt in every way a check looks for, goes the careful way and is refused
there with the same reason as before."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from spiral_tasks import records
from spiral_tasks.errors import CorruptRecord
from spiral_tasks.keys import TenantKeys
from spiral_tasks.model import Memory
from spiral_tasks.validation import MEMORY_ID_PATTERN

KEY = TenantKeys("acme").memory("m1")
GOOD: dict[str, Any] = {
    "id": "m1", "tenant": "acme", "content": "hello", "type": "general", "depth": "deep",
    "sigil": "4799090435ba727efb", "spiral_id": "spiral_1",
    "position": {"index": 3, "angle": 1.5, "radius": 2.0, "x": 0.5, "y": -0.5, "turn": 0},
    "associations": ["m0"], "created": 1000.5, "last_accessed": 1001.5, "access_count": 2,
    "strength": 0.5,
}
BAD_VALUES: list[Any] = [None, True, -1, 1.5, float("inf"), float("-inf"), float("nan"),
                         "text", "", [], {}, ["x"], {"a": 1}, 2**70, "bad id!"]


def spoilt() -> list[tuple[str, dict[str, Any] | Any]]:
    """The good record with one field replaced, removed or added, or not a dict."""
    cases: list[tuple[str, Any]] = [("not a dict", ["m1"]), ("a string", "m1")]
    for name in list(GOOD) + [f"position.{p}" for p in GOOD["position"]]:
        for bad in [*BAD_VALUES, "missing"]:
            record = copy.deepcopy(GOOD)
            where, field = (record["position"], name[9:]) if name.startswith("position.") \
                else (record, name)
            if bad == "missing":
                del where[field]
            else:
                where[field] = bad
            cases.append((f"{name}={bad!r}", record))
    for depth in ("surface", "core", "Deep", "deeper"):
        cases.append((f"depth={depth}", {**GOOD, "depth": depth}))
    cases.append(("another tenant", {**GOOD, "tenant": "other"}))
    cases.append(("another id", {**GOOD, "id": "m2"}))
    cases.append(("an extra field", {**GOOD, "extra": 1}))
    cases.append(("ints for floats", {**GOOD, "created": 1000, "strength": 1}))
    cases.append(("no associations", {**GOOD, "associations": []}))
    return cases


def outcome(check: Callable[[str, Any], Any], value: Any) -> str | None:
    try:
        check(KEY, value)
    except CorruptRecord as exc:
        return exc.reason
    return None


def careful(key: str, value: Any) -> dict[str, Any]:
    """`memory_record` as it was before the quick check: field by field."""
    try:
        record = Memory.checked_json(value)
    except records.SHAPE_ERRORS as exc:
        raise CorruptRecord(key, f"not a memory record: {exc}") from None
    if TenantKeys(record["tenant"]).memory(record["id"]) != key:
        raise CorruptRecord(key, "holds another memory")
    for name in ("spiral_id", "sigil"):
        if not MEMORY_ID_PATTERN.fullmatch(record[name]):
            raise CorruptRecord(key, f"{name} is not an id")
    return record


@pytest.mark.parametrize(("case", "value"), spoilt(), ids=[c for c, _ in spoilt()])
def test_the_quick_check_passes_only_what_the_careful_one_passes(case: str,
                                                                 value: Any) -> None:
    refused = outcome(careful, value)
    if records.plainly_memory(KEY, value):
        assert refused is None, case
    assert (outcome(records.memory_record, value) is None) == (refused is None), case


def test_a_record_as_the_engine_writes_it_passes_quickly() -> None:
    assert records.plainly_memory(KEY, copy.deepcopy(GOOD))
    assert records.memory_record(KEY, GOOD) is GOOD
