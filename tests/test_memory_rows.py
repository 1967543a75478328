"""The rebuild's batch check of memory records (`records.memory_rows`, msgspec decoding
and checking the bytes) agrees with reading them the usual way (orjson, then the
careful check): a batch gets rows only if every record in it decodes and passes the
careful check, and each row is, to the type of every number, the one `row_of` gives of
what `memory_record` returns; and a rebuild over damaged records reports exactly what
it reports with the batch check switched off."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spiral_tasks import records
from spiral_tasks.errors import CorruptRecord
from spiral_tasks.keys import TenantKeys
from tests.test_memory_row import (
    CHANGES,
    EXTRA_FIELDS,
    FIELDS,
    JSON,
    KNOWN,
    PREFIX,
    damage,
    damaged_tenant,
    place,
    report_of,
)
from tests.test_record_checks import GOOD, KEY, careful, spoilt

#: JSON number texts, well formed or not: what a record's numbers may be written as.
NUMBER_TEXT = st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?",
                            fullmatch=True) | st.sampled_from(
    ["1e400", "-1e400", "NaN", "Infinity", "1.", ".5", "01", "+1", "1e", "-0", "-0.0",
     "9223372036854775807", "9223372036854775808", "18446744073709551615",
     "18446744073709551616", "-9223372036854775808", "-9223372036854775809"])


def usual(raw: bytes) -> Any:
    """The row the usual way reads `raw` to, or None where that way refuses it."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    try:
        careful(KEY, value)
    except CorruptRecord:
        return None
    return records.row_of(records.memory_record(KEY, value))


def agree(raw: bytes, spiral_ids: frozenset[str] = frozenset()) -> None:
    """A row from `memory_rows` only where the usual way gives one, and the same row,
    every number of the same type (`repr`: 1 is not 1.0, -0.0 is not 0.0)."""
    rows = records.memory_rows([KEY], [raw], PREFIX, "acme", spiral_ids)
    if rows is not None:
        expected = usual(raw)
        assert expected is not None, raw
        assert repr(rows) == repr([expected]), raw


def texts(value: Any) -> list[bytes]:
    """`value` written as orjson writes it and as the standard library does (which
    writes NaN, infinities and integers of any size)."""
    found = [json.dumps(value).encode()]
    with contextlib.suppress(orjson.JSONEncodeError):
        found.append(orjson.dumps(value))
    return found


@pytest.mark.parametrize(("case", "value"), spoilt(), ids=[c for c, _ in spoilt()])
def test_a_batch_gets_rows_only_where_the_careful_check_passes(case: str,
                                                               value: Any) -> None:
    for raw in texts(value):
        agree(raw)
        agree(raw, frozenset(KNOWN))


def test_records_as_the_engine_writes_them_get_their_rows() -> None:
    raws = [orjson.dumps(GOOD)] * 3
    rows = records.memory_rows([KEY] * 3, raws, PREFIX, "acme")
    assert rows == [records.row_of(GOOD)] * 3
    assert records.memory_rows([KEY] * 3, raws, PREFIX, "acme", KNOWN) == rows
    assert records.memory_rows([], [], PREFIX, "acme") == []


def test_one_record_not_plainly_a_memory_sends_its_whole_batch_the_usual_way() -> None:
    good = orjson.dumps(GOOD)
    for bad in (b"{", orjson.dumps({**GOOD, "extra": 1}), orjson.dumps({**GOOD, "id": "m2"}),
                orjson.dumps({**GOOD, "sigil": "bad id!"}), b"\xff"):
        assert records.memory_rows([KEY] * 3, [good, bad, good], PREFIX, "acme") is None
    # Another tenant's key, and another tenant's prefix.
    assert records.memory_rows([KEY, KEY + "x"], [good, good], PREFIX, "acme") is None
    assert records.memory_rows([KEY], [good], PREFIX, "other") is None


@settings(max_examples=500, deadline=None)
@given(CHANGES, EXTRA_FIELDS)
def test_any_fields_replaced_or_removed_rows_and_careful_agree(
        changes: list[tuple[str, Any]], extra: dict[str, Any]) -> None:
    """None stands for a field removed."""
    record = copy.deepcopy(GOOD)
    damage(record, changes)
    for value in (record, {**extra, **record}):
        for raw in texts(value):
            agree(raw)
            agree(raw, frozenset(KNOWN))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([f for f in FIELDS if f != "position"]), NUMBER_TEXT)
def test_any_number_text_in_any_field_rows_and_careful_agree(name: str, text: str) -> None:
    """Each field written as a JSON number of any form: where both read it, the same
    number of the same type; where either refuses it, no row."""
    record = copy.deepcopy(GOOD)
    where, field = place(record, name)
    where[field] = "\x00marker"
    raw = orjson.dumps(record).replace(b'"\\u0000marker"', text.encode())
    agree(raw)


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, 400), st.integers(0, 8), st.binary(max_size=8))
def test_any_bytes_spliced_into_a_record_rows_and_careful_agree(
        at: int, cut: int, splice: bytes) -> None:
    """Bytes that do not decode, or decode to something else, included."""
    data = orjson.dumps(GOOD)
    at = at % len(data)
    agree(data[:at] + splice + data[at + cut:])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 23), st.sampled_from(FIELDS), st.none() | JSON),
                max_size=6))
def test_a_rebuild_reports_the_same_with_and_without_the_batch_check(
        damages: list[tuple[int, str, Any]]) -> None:
    """Records damaged field by field: the dry run's report, quarantines and reasons
    included, is the same whether the nodes came as rows or each went the careful
    way."""
    storage, clock = damaged_tenant(damages)
    rows = report_of(storage, clock)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(records, "memory_rows", lambda *_, **__: None)
        patch.setattr(records, "memory_row", lambda *_: None)  # and each the careful way
        assert report_of(storage, clock) == rows


def test_line_breaks_in_keys_ids_or_sigils_send_the_batch_the_usual_way() -> None:
    """The batch's keys, ids and sigils are compared and matched a line each: a line
    break inside one must not pass for two of them."""
    other = TenantKeys("acme").memory("m2")
    good, second = orjson.dumps(GOOD), orjson.dumps({**GOOD, "id": "m2"})
    assert records.memory_rows([KEY, other], [good, second], PREFIX, "acme") is not None
    for sigil in ("abc\ndef", "abc\n", "\nabc"):
        spoiled = orjson.dumps({**GOOD, "id": "m2", "sigil": sigil})
        assert records.memory_rows([KEY, other], [good, spoiled], PREFIX, "acme") is None
        assert records.memory_rows([other], [spoiled], PREFIX, "acme") is None
    for spiral_id in ("spiral_1\nspiral_2", "spiral_3\n"):
        spoiled = orjson.dumps({**GOOD, "id": "m2", "spiral_id": spiral_id})
        assert records.memory_rows([KEY, other], [good, spoiled], PREFIX, "acme") is None
    # An id with a line break, at the key it makes (which the careful check passes).
    joined = f"m1\n{PREFIX}m2"
    record = orjson.dumps({**GOOD, "id": joined})
    assert records.memory_rows([PREFIX + joined], [record], PREFIX, "acme") is None
    assert records.memory_rows([KEY, other], [record, second], PREFIX, "acme") is None
