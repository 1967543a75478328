"""The adapter contract: one suite, run against memory, LevelDB and real Redis."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from spiral_tasks.errors import StorageHeld, StorageUnavailable
from spiral_tasks.storage import redis as redis_storage
from spiral_tasks.storage.base import (
    CheckedPut,
    Delete,
    Increment,
    IndexPut,
    IndexRemove,
    LogAppend,
    LogTrim,
    Put,
    Storage,
)
from spiral_tasks.storage.level import LevelStorage
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.testing.redis_server import free_port
from tests.corruption import write_raw
from tests.processes import run_in_processes

JSON_VALUES: list[Any] = [
    "plain",
    "",
    0,
    -42,
    2**63 - 1,
    3.141592653589793,
    -1e-300,
    True,
    False,
    [],
    {},
    [1, "two", 3.0, None, True, {"nested": [1, 2]}],
    {"z": 1, "a": 2, "m": {"y": [None, False]}},
    "Ünïcödé ✓ 漢字 🌀 \u0000 \n\t\"quoted\" \\back",
    {"emoji 🌀": "κλειδί", "": "empty key"},
]


def test_init_is_idempotent(storage: Storage) -> None:
    storage.set("k", 1)
    storage.init()
    storage.init()
    assert storage.get("k") == 1


def test_get_of_missing_key_is_none(storage: Storage) -> None:
    assert storage.get("nothing-here") is None
    assert storage.get_many(["a", "b"]) == [None, None]


@pytest.mark.parametrize("value", JSON_VALUES)
def test_set_get_round_trips_every_json_type(storage: Storage, value: Any) -> None:
    storage.set("value", value)
    got = storage.get("value")
    assert got == value
    assert type(got) is type(value)
    if isinstance(value, dict):
        assert list(got) == list(value)  # property order kept


@pytest.mark.parametrize("value", JSON_VALUES)
def test_a_value_checked_where_it_was_built_is_stored_like_any_other(
        storage: Storage, value: Any) -> None:
    storage.apply([CheckedPut("checked", value), Put("plain", value)])
    assert storage.get("checked") == value
    assert dict(storage.scan_stored("checked")) == {"checked": dict(
        storage.scan_stored("plain"))["plain"]}


def test_stored_value_is_a_copy(storage: Storage) -> None:
    original = {"list": [1, 2]}
    storage.set("copy", original)
    original["list"].append(3)
    got = storage.get("copy")
    assert got == {"list": [1, 2]}
    got["list"].append(4)
    assert storage.get("copy") == {"list": [1, 2]}


def test_one_megabyte_payload(storage: Storage) -> None:
    payload = {"blob": "x" * (1024 * 1024), "tail": "🌀" * 1000}
    storage.set("big", payload)
    assert storage.get("big") == payload


def test_deep_nesting(storage: Storage) -> None:
    value: Any = "bottom"
    for level in range(120):  # 240 levels of containers
        value = {"level": level, "child": [value]}
    storage.set("deep", value)
    assert storage.get("deep") == value


def test_nesting_beyond_the_limit_is_refused(storage: Storage) -> None:
    value: Any = 0
    for _ in range(300):
        value = [value]
    with pytest.raises(ValueError, match="nested deeper"):
        storage.set("too-deep", value)
    assert storage.get("too-deep") is None


def test_delete_and_delete_of_missing_key(storage: Storage) -> None:
    storage.set("gone", {"a": 1})
    storage.delete("gone")
    assert storage.get("gone") is None
    storage.delete("gone")
    storage.delete("never-existed")
    assert storage.keys("gone") == []


def test_keys_by_prefix(storage: Storage) -> None:
    for key in ["mem:1", "mem:2", "mem:10", "spiral:1", "memo"]:
        storage.set(key, key)
    assert sorted(storage.keys("mem:")) == ["mem:1", "mem:10", "mem:2"]
    assert sorted(storage.keys("mem")) == ["mem:1", "mem:10", "mem:2", "memo"]
    assert storage.keys("nope:") == []


def test_keys_with_empty_prefix_lists_everything(storage: Storage) -> None:
    assert storage.keys("") == []
    storage.set("a", 1)
    storage.set("b:c", 2)
    storage.incr("counter", 3)
    assert sorted(storage.keys("")) == ["a", "b:c", "counter"]


SPECIAL_KEYS = ["star*key", "q?mark", "[brackets]", "back\\slash", "t:{tenant}:x",
                "spaces in key", "ünï:🌀", "new\nline"]


@pytest.mark.parametrize("key", SPECIAL_KEYS)
def test_special_characters_in_keys_are_literal(storage: Storage, key: str) -> None:
    storage.set(key, key)
    storage.set(key + "-sibling", 1)
    storage.set("other", 2)
    assert storage.get(key) == key
    assert sorted(storage.keys(key)) == sorted([key, key + "-sibling"])


def test_glob_characters_in_a_prefix_match_only_themselves(storage: Storage) -> None:
    storage.set("a*b", 1)
    storage.set("axb", 2)
    storage.set("a?", 3)
    storage.set("ab", 4)
    assert storage.keys("a*") == ["a*b"]
    assert storage.keys("a?") == ["a?"]


def test_scan_streams_keys_and_values(storage: Storage) -> None:
    expected = {f"scan:{i}": {"n": i} for i in range(2500)}
    storage.apply([Put(k, v) for k, v in expected.items()])
    storage.set("elsewhere", 0)
    assert dict(storage.scan("scan:")) == expected


@pytest.mark.parametrize("key", [None, 42, b"bytes", 1.5, ("t",), ""])
def test_malformed_keys_are_refused(storage: Storage, key: Any) -> None:
    storage.set("keep", 1)
    for call in (lambda: storage.set(key, 1), lambda: storage.get(key),
                 lambda: storage.delete(key), lambda: storage.incr(key, 1)):
        with pytest.raises((TypeError, ValueError)):
            call()
    assert storage.keys("") == ["keep"]


def test_key_with_lone_surrogate_or_oversized_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        storage.set("bad\udc80", 1)
    with pytest.raises(ValueError, match="limit"):
        storage.set("k" * 2000, 1)
    assert storage.keys("") == []


@pytest.mark.parametrize("value", [
    {1, 2},
    object(),
    float("nan"),
    float("inf"),
    2**64,
    (1, 2),
    {1: "int key"},
    "lone \udc80 surrogate",
    b"bytes",
])
def test_values_that_cannot_be_encoded_are_refused(storage: Storage, value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        storage.set("bad", value)
    assert storage.get("bad") is None
    assert storage.keys("") == []


@pytest.mark.parametrize("raw", [b"007", b"-0", b"00", b"12345678901234567890",
                                 b"9223372036854775807"])
def test_a_counter_the_backend_cannot_add_to_stops_the_batch_before_it_writes(
        storage: Storage, raw: bytes) -> None:
    """Bytes that read as digits but are no integer Redis adds to (a leading zero,
    "-0", past 64 bits) passed the write script's check, and its INCRBY failed half-way
    through the batch, after the writes before it had landed. Each backend either
    adds to the counter or refuses the whole batch."""
    write_raw(storage, "n", raw)
    try:
        storage.apply([Put("first", 1), Increment("n", 1)])
    except ValueError:
        assert storage.get("first") is None
        assert storage.keys("first") == []
    else:
        assert storage.get("first") == 1
        assert storage.get("n") == int(raw) + 1


def test_a_step_past_18_digits_is_refused_by_every_backend(storage: Storage) -> None:
    with pytest.raises(ValueError, match="out of range"):
        storage.apply([Put("first", 1), Increment("n", 10**18)])
    assert storage.keys("") == []
    storage.apply([Increment("n", 10**18 - 1), Increment("n", -(10**18 - 1))])
    assert storage.get("n") == 0


def test_batch_with_one_bad_value_writes_nothing(storage: Storage) -> None:
    with pytest.raises(TypeError):
        storage.apply([Put("first", 1), Increment("n", 1), Put("second", object())])
    assert storage.keys("") == []


def test_batch_with_a_non_integer_counter_writes_nothing(storage: Storage) -> None:
    storage.set("text", "not a number")
    with pytest.raises(ValueError, match="integer counter"):
        storage.apply([Put("first", 1), Increment("text", 1)])
    assert storage.get("first") is None
    assert storage.get("text") == "not a number"
    with pytest.raises(ValueError, match="integer counter"):
        storage.incr("text", 1)


def test_batch_applies_in_order(storage: Storage) -> None:
    storage.apply([Put("a", 1), Delete("a"), Put("b", 2), Increment("c", 5),
                   Increment("c", -2), Put("d", [1])])
    assert storage.get_many(["a", "b", "c", "d"]) == [None, 2, 3, [1]]


def test_incr_creates_and_adds(storage: Storage) -> None:
    assert storage.incr("n") == 1
    assert storage.incr("n", 41) == 42
    assert storage.incr("n", -50) == -8
    assert storage.get("n") == -8
    with pytest.raises(TypeError):
        storage.incr("n", 1.5)  # type: ignore[arg-type]


def test_ordered_index(storage: Storage) -> None:
    storage.apply([IndexPut("q", "late", 30.0), IndexPut("q", "early", -5.5),
                   IndexPut("q", "mid", 10.0), IndexPut("other", "x", 0.0)])
    assert storage.index_range("q") == [("early", -5.5), ("mid", 10.0), ("late", 30.0)]
    assert storage.index_range("q", 2) == [("early", -5.5), ("mid", 10.0)]
    assert storage.index_range("q", 0) == []
    storage.apply([IndexPut("q", "early", 99.0), IndexRemove("q", "mid"),
                   IndexRemove("q", "never-there")])
    assert storage.index_range("q") == [("late", 30.0), ("early", 99.0)]
    assert storage.index_size("q") == 2
    assert storage.index_size("missing") == 0
    assert storage.keys("q") == []
    assert storage.get("q") is None


def test_index_entries_do_not_show_as_keys_or_values(storage: Storage) -> None:
    storage.apply([IndexPut("t:{a}:gcq", "m", 1.0), Put("t:{a}:mem:m", {"id": "m"})])
    assert dict(storage.scan("t:{a}:")) == {"t:{a}:mem:m": {"id": "m"}}


def test_concurrent_writers_last_writer_wins(storage: Storage) -> None:
    values = [{"writer": w, "payload": str(w) * 500} for w in range(8)]

    def write(value: dict[str, Any]) -> None:
        for round_ in range(50):
            storage.set("shared", value)
            storage.set(f"own:{value['writer']}:{round_}", round_)

    threads = [threading.Thread(target=write, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert storage.get("shared") in values
    assert len(storage.keys("own:")) == 8 * 50


def test_concurrent_increments_are_exact(storage: Storage) -> None:
    def bump() -> None:
        for _ in range(250):
            storage.incr("hits")
        storage.apply([Increment("hits", 2), Increment("batched", 1)])

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert storage.get("hits") == 8 * 252
    assert storage.get("batched") == 8


def _process_writer(url: str, writer: int) -> None:
    store = RedisStorage(url)
    store.init()
    for round_ in range(100):
        store.set("shared", {"writer": writer, "payload": str(writer) * 1000})
        store.incr("hits")
        store.apply([Increment("batched", 1), Put(f"own:{writer}:{round_}", round_)])
    store.close()


def test_redis_concurrent_processes(redis_url: str) -> None:
    run_in_processes(_process_writer, [(redis_url, w) for w in range(4)], timeout=60)
    store = RedisStorage(redis_url)
    store.init()
    final = store.get("shared")
    assert final in [{"writer": w, "payload": str(w) * 1000} for w in range(4)]
    assert store.get("hits") == 400
    assert store.get("batched") == 400
    assert len(store.keys("own:")) == 400
    store.close()


def test_level_storage_persists_across_reopen(tmp_path: Any) -> None:
    path = tmp_path / "db"
    with LevelStorage(path) as first:
        first.apply([Put("kept", {"a": [1]}), Increment("n", 7), IndexPut("q", "m", 2.5)])
    with LevelStorage(path) as second:
        assert second.get("kept") == {"a": [1]}
        assert second.get("n") == 7
        assert second.index_range("q") == [("m", 2.5)]


def test_level_storage_refuses_a_second_process(tmp_path: Any) -> None:
    with LevelStorage(tmp_path / "db"), pytest.raises(StorageHeld, match="one process"):
        LevelStorage(tmp_path / "db").init()


def test_redis_storage_reports_an_unreachable_server() -> None:
    with pytest.raises(StorageUnavailable, match="cannot reach Redis"):
        RedisStorage(f"redis://127.0.0.1:{free_port()}/0").init()


def test_scan_under_a_hash_tag_pages_through_many_keys(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    # Redis lists a directory 4,096 names a page (a tenant's nodes in one): pages of
    # 1,000 make these 2,500 keys three pages, the last one short.
    monkeypatch.setattr(redis_storage, "SCAN_COUNT", 1000)
    expected = {f"t:{{acme}}:mem:{i:05d}": i for i in range(2500)}
    storage.apply([Put(k, v) for k, v in expected.items()])
    storage.apply([Put("t:{acme}:spiral:1", 0), Put("t:{acmeX}:mem:1", 0),
                   Delete("t:{acme}:mem:00007")])
    del expected["t:{acme}:mem:00007"]
    assert dict(storage.scan("t:{acme}:mem:")) == expected
    assert len(storage.keys("t:{acme}:")) == 2500
    assert sorted(storage.keys("t:{acm")) == sorted([*expected, "t:{acme}:spiral:1",
                                                    "t:{acmeX}:mem:1"])


def test_set_if_absent_keeps_the_first_value(storage: Storage) -> None:
    assert storage.set_if_absent("once", {"first": True}) == {"first": True}
    assert storage.set_if_absent("once", {"second": True}) == {"first": True}
    assert storage.get("once") == {"first": True}
    assert "once" in storage.keys("")


def test_set_if_absent_from_many_threads_has_one_winner(storage: Storage) -> None:
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def race(n: int) -> None:
        barrier.wait(10)
        results.append(storage.set_if_absent("race", n))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8
    assert len(set(results)) == 1
    assert storage.get("race") == results[0]


# --- append-only logs (the audit log) --------------------------------------------------

def test_a_log_reads_back_in_order_and_pages_by_position(storage: Storage) -> None:
    storage.apply([LogAppend("t:{a}:log", seq, {"n": seq}) for seq in range(1, 6)])
    every = storage.log_read("t:{a}:log")
    assert [value for _, value in every] == [{"n": n} for n in range(1, 6)]
    positions = [position for position, _ in every]
    assert len(set(positions)) == 5
    after = storage.log_read("t:{a}:log", positions[1], limit=2)
    assert [value["n"] for _, value in after] == [3, 4]
    assert storage.log_read("t:{a}:other") == []


def test_a_log_is_not_a_key(storage: Storage) -> None:
    storage.apply([LogAppend("t:{a}:log", 1, "entry"), Put("t:{a}:k", 1)])
    assert storage.keys("t:{a}:") == ["t:{a}:k"]
    assert [k for k, _ in storage.scan("")] == ["t:{a}:k"]


def test_a_trim_removes_entries_through_a_position(storage: Storage) -> None:
    storage.apply([LogAppend("t:{a}:log", seq, seq) for seq in range(1, 6)])
    positions = [p for p, _ in storage.log_read("t:{a}:log")]
    storage.apply([LogTrim("t:{a}:log", positions[2]), Put("t:{a}:point", 3)])
    assert [value for _, value in storage.log_read("t:{a}:log")] == [4, 5]
    assert storage.get("t:{a}:point") == 3


def test_a_refused_batch_appends_nothing(storage: Storage) -> None:
    storage.set("t:{a}:text", "not a number")
    with pytest.raises(ValueError, match="integer counter"):
        storage.apply([LogAppend("t:{a}:log", 1, "entry"), Increment("t:{a}:text", 1)])
    with pytest.raises(TypeError):
        storage.apply([LogAppend("t:{a}:log", 1, {1, 2})])
    with pytest.raises(ValueError, match="seq"):
        storage.apply([LogAppend("t:{a}:log", 0, "entry")])
    assert storage.log_read("t:{a}:log") == []


def test_steps_that_add_up_past_64_bits_stop_the_batch_before_it_writes(
        storage: Storage) -> None:
    """Each step is in range and so is the counter before the batch, but the batch's
    steps on one counter add up past 64 bits: Redis's INCRBY overflowed half-way
    through the batch, after the writes before it had landed. Each backend applies
    none (every backend refuses a counter past 64 bits, as Redis does)."""
    steps = [Increment("n", 10**18 - 1)] * 10
    with pytest.raises(ValueError, match="64 bits"):
        storage.apply([Put("first", 1), *steps])
    assert storage.keys("") == []
    storage.apply(steps[:9])
    assert storage.incr("n", -1) == 9 * (10**18 - 1) - 1  # 19 digits: still a counter


@pytest.mark.parametrize("value", ["text", 2**63 - 1])
def test_a_counter_put_earlier_in_the_batch_is_what_its_step_adds_to(
        storage: Storage, value: Any) -> None:
    """The write script checked each counter as stored before the batch: a put earlier
    in the same batch (text, or a number its step takes past 64 bits) went through
    the check and its INCRBY failed after the put had landed."""
    storage.apply([Put("n", 1)])
    with pytest.raises(ValueError, match=r"integer counter|64 bits"):
        storage.apply([Put("first", 1), Put("n", value), Increment("n", 1)])
    assert storage.get_many(["first", "n"]) == [None, 1]
    storage.apply([Put("n", "text"), Delete("n"), Increment("n", 2)])
    storage.apply([Put("m", 2**63 - 2), Increment("m", 1), Put("l", -(2**63) + 1),
                   Increment("l", -1)])
    assert storage.get_many(["n", "m", "l"]) == [2, 2**63 - 1, -(2**63)]
    with pytest.raises(ValueError, match="64 bits"):
        storage.apply([Put("first", 1), Increment("l", -1)])
    assert storage.get_many(["first", "l"]) == [None, -(2**63)]


@pytest.mark.parametrize("raw", [b"-9223372036854775808", b"9223372036854775807",
                                 b"9223372036854775808", b"-9223372036854775809",
                                 b"999999999", b"1000000000", b"-1000000000",
                                 b"1234567890123456789", b"0", b"-1"])
@pytest.mark.parametrize("delta", [1, -1, 10**18 - 1, -(10**18 - 1)])
def test_a_counter_at_the_edges_of_64_bits(storage: Storage, raw: bytes, delta: int) -> None:
    """Every backend adds exactly when Redis's INCRBY does (the counter and the sum
    inside 64 bits), and refuses the whole batch otherwise."""
    write_raw(storage, "n", raw)
    if -(2**63) <= int(raw) <= 2**63 - 1 and -(2**63) <= int(raw) + delta <= 2**63 - 1:
        assert storage.apply([Put("first", 1), Increment("n", delta)]) == int(raw) + delta
        assert storage.get_many(["first", "n"]) == [1, int(raw) + delta]
    else:
        with pytest.raises(ValueError, match=r"integer counter|64 bits"):
            storage.apply([Put("first", 1), Increment("n", delta)])
        assert storage.get("first") is None
