"""What the store path's shortcuts stand for: a validated name remembered answers as the
pattern does; a state's copy carries every field, as its `__init__` would; a memory
backend's `read_many` reads as the base class's."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_tasks import validation
from spiral_tasks.cache import UNKNOWN, TenantState
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.memory import MemoryStorage

NAMES = st.one_of(st.sampled_from(["bench", "a", "x" * 64, "x" * 65, "-a", "a b", "é", ""]),
                  st.text(max_size=8), st.integers(), st.none())


def _by_pattern(value: Any) -> bool:
    return isinstance(value, str) and validation.NAME_PATTERN.fullmatch(value) is not None


@settings(max_examples=400, deadline=None)
@given(names=st.lists(NAMES, max_size=12))
def test_a_remembered_name_answers_as_the_pattern(names: list[Any]) -> None:
    for value in names * 2:  # each a second time, when it may be remembered
        if _by_pattern(value):
            assert validation.name("tenant", value) is value
        else:
            with pytest.raises(InvalidArgument):
                validation.name("tenant", value)


def test_a_str_subclass_is_never_taken_for_a_remembered_name() -> None:
    class Sneaky(str):
        pass

    validation.name("tenant", "bench")
    validation.name("tenant", Sneaky("other"))  # checked, and not remembered
    assert all(type(v) is str for v in validation._NAMES_SEEN)
    with pytest.raises(InvalidArgument):
        validation.name("tenant", Sneaky("not a name"))


def test_remembered_names_stay_bounded() -> None:
    for i in range(validation.NAMES_REMEMBERED * 3):
        validation.name("tenant", f"t{i}")
    assert len(validation._NAMES_SEEN) <= validation.NAMES_REMEMBERED


def test_a_copy_carries_every_field_as_init_would() -> None:
    state = TenantState({}, 3, "g1", ("k",), {"seq": 1}, None, False, {})
    copied = state.copy()
    assert state._shared
    assert copied._shared
    names = [f.name for f in dataclasses.fields(TenantState)]
    assert list(vars(copied)) == names  # all of them, in `__init__`'s order
    for name in names:
        if name != "_shared":
            assert getattr(copied, name) is getattr(state, name)
    assert TenantState().audit_head is UNKNOWN


@settings(max_examples=200, deadline=None)
@given(stored=st.dictionaries(st.sampled_from(["a", "b", "c"]),
                              st.sampled_from([b"1", b'{"seq": 2}', b"[", b"\xff",
                                               b'"x"', b"\x01sealed?"]), max_size=3),
       keys=st.lists(st.one_of(st.sampled_from(["a", "b", "c", "d"]),
                               st.sampled_from(["", 3, "x" * 1025])), max_size=4))
def test_memory_read_many_reads_as_the_base_class(stored: dict[str, bytes],
                                                  keys: list[Any]) -> None:
    storage = MemoryStorage()
    storage._data.update(stored)

    def outcome(read: Any) -> Any:
        try:
            return ("ok", read(keys))
        except Exception as exc:
            return ("raised", type(exc), str(exc))

    assert outcome(storage.read_many) == outcome(lambda k: Storage.read_many(storage, k))
