"""`stage_writes` (memory's one pass) against the two steps it stands for.

The memory backend checks, encodes and stages a batch in one pass; every backend's
contract is `stage_values(prepare(writes, codec), read)`. Here both are run on the same
batches, good and bad (keys that are no keys, values JSON cannot keep, counters that
hold no integer, subclasses of the writes), and must give the same staged bytes, the
same last counter and the same other writes, or raise the same error.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_tasks.storage.base import (
    CheckedLogAppend,
    CheckedPut,
    Delete,
    Increment,
    IndexPut,
    IndexRemove,
    LogAppend,
    LogTrim,
    Publish,
    Put,
    Write,
    prepare,
    stage_values,
    stage_writes,
)
from spiral_tasks.storage.codec import PLAIN, Codec
from spiral_tasks.storage.level import LevelStorage
from spiral_tasks.storage.memory import MemoryStorage


class _Tagged(Codec):
    """A codec that changes what it stores (as sealing does), deterministically."""

    def wrap(self, key: str, raw: bytes) -> bytes:
        return b"#" + key.encode("utf-8", "surrogatepass") + b"#" + raw


class _SubPut(Put):
    pass


class _SubIncrement(Increment):
    pass


KEYS = st.one_of(st.sampled_from(["a", "b", "n:1", "t:count", "é", "x" * 1024]),
                 st.sampled_from(["", "x" * 1025, "\ud800", 3, None, b"a"]))
GOOD_KEYS = st.sampled_from(["a", "b", "n:1", "t:count", "é"])
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(), st.text(max_size=5), st.tuples(st.integers()),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=1))
DELTAS = st.one_of(st.integers(min_value=-5, max_value=5), st.booleans(), st.floats(),
                   st.sampled_from(["1", None]))
SCORES = st.one_of(st.floats(), st.integers(), st.booleans(), st.sampled_from(["1"]))


#: Writes every check passes (a counter may still hold no integer: `STORED`).
GOOD: st.SearchStrategy[Write] = st.one_of(
    st.builds(Put, GOOD_KEYS, st.one_of(st.integers(), st.text(max_size=4),
                                        st.lists(st.integers(), max_size=2))),
    st.builds(CheckedPut, GOOD_KEYS, st.one_of(st.integers(), st.text(max_size=4))),
    st.builds(Delete, GOOD_KEYS),
    st.builds(Increment, GOOD_KEYS, st.integers(min_value=-5, max_value=5)),
    st.builds(IndexPut, GOOD_KEYS, GOOD_KEYS, st.floats(allow_nan=False)),
    st.builds(IndexRemove, GOOD_KEYS, GOOD_KEYS),
    st.builds(Publish, GOOD_KEYS, st.text(max_size=3)),
    st.builds(CheckedLogAppend, GOOD_KEYS, st.integers(min_value=1, max_value=3),
              st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    st.builds(LogTrim, GOOD_KEYS, GOOD_KEYS),
)
#: Any write, most of them refused: bad keys, values, deltas, scores; subclasses.
ANY: st.SearchStrategy[Write] = st.one_of(
    GOOD,
    st.builds(Put, KEYS, VALUES),
    st.builds(CheckedPut, KEYS, VALUES),
    st.builds(_SubPut, GOOD_KEYS, VALUES),
    st.builds(Delete, KEYS),
    st.builds(Increment, KEYS, DELTAS),
    st.builds(_SubIncrement, GOOD_KEYS, DELTAS),
    st.builds(IndexPut, KEYS, KEYS, SCORES),
    st.builds(IndexRemove, KEYS, KEYS),
    st.builds(Publish, KEYS, st.one_of(st.text(max_size=3), st.integers())),
    st.builds(LogAppend, KEYS, st.one_of(st.integers(min_value=-1, max_value=3),
                                         st.booleans()), VALUES),
    # Checked entries have an inline path in the one pass: bad logs and seqs leave it.
    st.builds(CheckedLogAppend, KEYS,
              st.one_of(st.integers(min_value=-1, max_value=3), st.booleans(),
                        st.sampled_from([2**63 - 1, 2**63, 1.0])), VALUES),
    st.builds(LogTrim, KEYS, KEYS),
    st.sampled_from([object(), "not a write"]),
)


@st.composite
def batches(draw: st.DrawFn) -> list[Write]:
    """Good writes with at most one other (good or not) somewhere among them."""
    writes = draw(st.lists(GOOD, max_size=10))
    if draw(st.booleans()):
        writes.insert(draw(st.integers(0, len(writes))), draw(ANY))
    return writes


STORED = st.dictionaries(GOOD_KEYS, st.sampled_from([b"0", b"7", b"-3", b"x", b"1.5",
                                                     b'"s"']), max_size=4)


def _outcome(run: Any) -> Any:
    try:
        return ("ok", run())
    except Exception as exc:
        return ("raised", type(exc), str(exc))


@settings(max_examples=600, deadline=None)
@given(writes=batches(), stored=STORED,
       values=st.sampled_from([PLAIN, _Tagged()]))
def test_one_pass_stages_as_the_two_steps(writes: list[Write], stored: dict[str, bytes],
                                          values: Codec) -> None:
    one = _outcome(lambda: stage_writes(writes, values, stored.get))
    two = _outcome(lambda: stage_values(prepare(writes, values), stored.get))
    assert one == two


@settings(max_examples=200, deadline=None)
@given(writes=batches(), stored=STORED)
def test_memory_apply_leaves_what_the_generic_apply_leaves(
        writes: list[Write], stored: dict[str, bytes]) -> None:
    """`MemoryStorage.apply` (one pass) against the base class's (`prepare`, then
    `_apply`): the same data, indexes and logs after, or the same error and nothing
    written."""
    fast, generic = MemoryStorage(), MemoryStorage()
    for storage in (fast, generic):
        storage._data.update(stored)
    one = _outcome(lambda: fast.apply(writes))
    two = _outcome(lambda: super(MemoryStorage, generic).apply(writes))
    assert one == two
    assert fast._data == generic._data
    assert {k: v.scores for k, v in fast._indexes.items()} == \
        {k: v.scores for k, v in generic._indexes.items()}
    assert fast._logs == generic._logs


@settings(max_examples=60, deadline=None)
@given(writes=batches(), stored=STORED)
def test_level_apply_leaves_what_the_generic_apply_leaves(
        tmp_path_factory: Any, writes: list[Write], stored: dict[str, bytes]) -> None:
    """The same for LevelDB: every key and value after, or the same error."""
    found = []
    for generic in (False, True):
        storage = LevelStorage(str(tmp_path_factory.mktemp("level") / "db"))
        storage.init()
        try:
            for key, raw in stored.items():
                storage.db.put(key.encode(), raw)
            apply = super(LevelStorage, storage).apply if generic else storage.apply
            outcome = _outcome(lambda: apply(writes))  # noqa: B023 - called at once
            found.append((outcome, list(storage.db.iterator())))
        finally:
            storage.close()
    assert found[0] == found[1]
