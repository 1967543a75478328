"""What each key of a tenant holds, checked as it is read.

A record read from storage is what its key says, or `CorruptRecord` naming the key:
bytes that do not decode (`Unreadable`), a value of the wrong shape (a string where
a memory belongs, a count that is not a number), or another record's content (a
memory record whose id or tenant is not the key's). Operations read through these
functions, so a corrupt record fails the one operation that needs it with a clear
error, never with a KeyError from deep inside, and never becomes a memory or a spiral
built from garbage. The rebuild uses `problem` to find what to quarantine; a backup
restore uses it to refuse a file whose records are not what their keys say.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Collection, Container, Iterable, Sequence
from typing import Annotated, Any, Literal, get_args

import msgspec

from spiral_tasks import validation
from spiral_tasks.errors import CorruptRecord, InvalidArgument
from spiral_tasks.keys import TenantKeys, split_tenant_key
from spiral_tasks.model import Depth, Memory, Spiral
from spiral_tasks.storage.base import Unreadable

#: What a malformed record raises while it is read into a model.
SHAPE_ERRORS = (KeyError, TypeError, ValueError, ArithmeticError, AttributeError)


def _readable(key: str, value: Any) -> Any:
    if isinstance(value, Unreadable):
        raise value.error()
    return value


def _because(exc: BaseException) -> str:
    text = str(exc) if not isinstance(exc, KeyError) else f"{exc.args[0]!r} is missing"
    return text[:120]


def memory(key: str, value: Any) -> Memory:
    """The memory stored at `key` (a `t:{T}:mem:<id>` key)."""
    return Memory.from_json(memory_record(key, value))


def memory_record(key: str, value: Any) -> dict[str, Any]:
    """The record stored at `key`, checked as `memory` checks it, as a dict: for the
    rebuild, which reads every node and needs a few of its fields."""
    if plainly_memory(key, value):
        checked: dict[str, Any] = value
        return checked
    # Something is wrong: the careful path says what, field by field.
    value = _readable(key, value)
    try:
        record = Memory.checked_json(value)
    except SHAPE_ERRORS as exc:
        raise CorruptRecord(key, f"not a memory record: {_because(exc)}") from None
    memory_id, tenant = record["id"], record["tenant"]
    if _keys(tenant).memory(memory_id) != key:
        raise CorruptRecord(key, f"holds memory {memory_id[:80]!r} of tenant "
                            f"{tenant[:80]!r}, not this key's")
    # Both become parts of keys (spiral:<id>, sigil:<sigil>) when the memory is
    # placed, removed or rebuilt: a key that cannot be one must fail here, not there.
    for name in ("spiral_id", "sigil"):
        if not validation.MEMORY_ID_PATTERN.fullmatch(record[name]):
            raise CorruptRecord(key, f"not a memory record: {name}: "
                                f"{record[name][:40]!r} is not an id")
    return record


@functools.lru_cache(maxsize=1024)
def _keys(tenant: str) -> TenantKeys:
    return TenantKeys(tenant)


_ID = validation.MEMORY_ID_PATTERN.fullmatch
_DEPTH_VALUES = frozenset(depth.value for depth in Depth)


@functools.lru_cache(maxsize=1024)
def _memories_of(tenant: str) -> str:
    return TenantKeys(tenant).memories


def plainly_memory(key: str, d: Any) -> bool:
    """Whether `d` passes every check `memory_record` makes (`Memory.checked_json`, the
    key, the ids), by `memory_row`'s one pass over its fields and the key's prefix
    cached: the careful path costs about as much again as decoding the record. False
    for anything else, which the careful path then names; so this may be stricter than
    that path, never looser."""
    tenant = d.get("tenant") if type(d) is dict else None
    return (type(tenant) is str
            and memory_row(key, d, _memories_of(tenant), tenant) is not None)


#: What `memory_row` gives of a record: its id, spiral id, depth, sigil, creation and
#: last access, strength, access count, and its position's index and radius.
MemoryRow = tuple[str, str, str, str, float, float, float, int, int, float]


def memory_row(key: str, d: Any, prefix: str, tenant: str,
               spiral_ids: Container[str] = ()) -> MemoryRow | None:
    """What the rebuild needs of the memory record `d`, read at `key` under `prefix`
    (tenant `tenant`'s memories), if it passes every check `memory_record` makes; None
    for anything else, which `memory_record` then reads (and names what is wrong): so
    this may be stricter than that path, never looser. `spiral_ids` holds spiral ids
    already found to be ids (most nodes share theirs), so their pattern is not matched
    again.

    The rebuild runs it for every node, so each field is looked up once and the
    checks are chosen for what they cost: a number's finiteness by one sum of all of
    them (finite only when every term is; a sum that overflows, or a number too large
    for a float, goes the careful way), an id's type by the pattern match or the key
    it must complete (either refuses a non-string: TypeError), the depth by the set of
    depths (which holds strings only)."""
    if type(d) is not dict:
        return None
    try:
        memory_id, spiral_id, depth = d["id"], d["spiral_id"], d["depth"]
        created, last_accessed = d["created"], d["last_accessed"]
        strength, access_count = d["strength"], d["access_count"]
        p, associations = d["position"], d["associations"]
        if type(p) is not dict:
            return None
        index, radius, turn = p["index"], p["radius"], p["turn"]
        angle, x, y = p["angle"], p["x"], p["y"]
        if not ((type(created) is float or type(created) is int)
                and (type(last_accessed) is float or type(last_accessed) is int)
                and (type(strength) is float or type(strength) is int)
                and (type(radius) is float or type(radius) is int)
                and (type(angle) is float or type(angle) is int)
                and (type(x) is float or type(x) is int)
                and (type(y) is float or type(y) is int)
                and type(access_count) is int and type(index) is int
                and type(turn) is int and (access_count | index | turn) >= 0
                and (total := created + last_accessed + strength + radius + angle + x
                     + y) - total == 0.0
                and depth in _DEPTH_VALUES and d["tenant"] == tenant
                and type(d["content"]) is str and type(d["type"]) is str
                and key == prefix + memory_id
                and type(associations) is list
                and (not associations or all(type(a) is str for a in associations))
                and type(spiral_id) is str
                and (spiral_id in spiral_ids or _ID(spiral_id) is not None)):
            return None
        sigil = d["sigil"]
        if _ID(sigil) is None:
            return None
    except (KeyError, TypeError, ArithmeticError):
        return None
    return (memory_id, spiral_id, depth, sigil, created, last_accessed, strength,
            access_count, index, radius)


# --- a batch of memory records decoded and checked in C (msgspec) ----------------------
# What `memory_row` checks of a decoded record, said as types, so that msgspec checks it
# while it decodes the bytes: a rebuild then makes no Python step per field of a node.
# Stricter than `Memory.checked_json`, never looser: counts are ints of 0 to 2**63 - 1
# and numbers ints of 64 bits or finite floats (orjson reads a larger integer as a
# float, which msgspec would not), and a field of no memory refuses the record (msgspec
# would skip it unread, where orjson refuses what it cannot decode). What msgspec
# refuses goes the careful way, which says what is wrong.

_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Number = (Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)]
           | Annotated[float, msgspec.Meta(ge=-1.7976931348623157e308,
                                           le=1.7976931348623157e308)])
_Depth = Literal["surface", "shallow", "deep", "core", "transcendent"]
if set(get_args(_Depth)) != _DEPTH_VALUES:  # pragma: no cover - a depth added to Depth
    raise RuntimeError("records._Depth must name every Depth")


class _Position(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    index: _Count
    angle: _Number
    radius: _Number
    x: _Number
    y: _Number
    turn: _Count


class _MemoryRecord(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    id: str
    tenant: str
    content: str
    type: str
    depth: _Depth
    sigil: str
    spiral_id: str
    position: _Position
    associations: list[str]
    created: _Number
    last_accessed: _Number
    access_count: _Count
    strength: _Number


# Not tracked by the cyclic GC (gc=False): a record holds strings, numbers and a list
# of strings, never a cycle, and a rebuild makes one per node.
_decode_memory = msgspec.json.Decoder(_MemoryRecord).decode
#: Ids, one a line: a batch's ids are matched by one pass of the pattern over all of
#: them (a line break is no id's character, so each line must be a whole id).
_ID_LINES = re.compile(f"{validation.MEMORY_ID_PATTERN.pattern}"
                       f"(?:\n{validation.MEMORY_ID_PATTERN.pattern})*").fullmatch


def _lines(texts: Iterable[str], count: int) -> str | None:
    """The `count` strings `texts`, one a line, if none holds a line break of its own
    (else None)."""
    joined = "\n".join(texts)
    return joined if joined.count("\n") == count - 1 else None


def _ids(texts: Collection[str]) -> bool:
    """Whether every one of `texts` is an id (`validation.MEMORY_ID_PATTERN`)."""
    joined = _lines(texts, len(texts))
    return joined is not None and _ID_LINES(joined) is not None


def memory_rows(keys: list[str], raws: Sequence[bytes], prefix: str, tenant: str,
                spiral_ids: Collection[str] = ()) -> list[MemoryRow] | None:
    """The `memory_row` of each record of a batch, read from its bytes `raws` (JSON, as
    the plain codec stores it) at `keys`, if every one passes every check
    `memory_record` makes; None when any does not, and the batch is then read the usual
    way (decoded, and each record through `memory_row` or `memory_record`). So this may
    be stricter than those, never looser, and a row it gives is the one they give.

    The rebuild reads every node so: msgspec decodes and checks the fields' types in
    C, and what is left is checked for the whole batch at once: the keys by comparing
    the batch's keys and its ids, each joined in one string, a line each; the sigils'
    (and new spiral ids') pattern by one match over all of them, a line each; a spiral
    id in `spiral_ids` was found an id already."""
    try:
        found = list(map(_decode_memory, raws))
    except (msgspec.MsgspecError, ValueError):  # invalid UTF-8 is a ValueError
        return None
    rows: list[MemoryRow] = [
        (m.id, m.spiral_id, m.depth, m.sigil, m.created, m.last_accessed, m.strength,
         m.access_count, m.position.index, m.position.radius) for m in found]
    if not rows:
        return rows
    count = len(rows)
    ids, spirals, _, sigils, *_ = zip(*rows, strict=True)
    new = set(spirals).difference(spiral_ids)
    joined_keys = _lines(keys, count)
    ok = (joined_keys is not None and prefix + f"\n{prefix}".join(ids) == joined_keys
          and [m.tenant for m in found].count(tenant) == count
          and _ids(sigils) and (not new or _ids(new)))
    return rows if ok else None


def row_of(record: dict[str, Any]) -> MemoryRow:
    """The `memory_row` of a record `memory_record` passed."""
    p = record["position"]
    return (record["id"], record["spiral_id"], record["depth"], record["sigil"],
            record["created"], record["last_accessed"], record["strength"],
            record["access_count"], p["index"], p["radius"])


def spiral(key: str, value: Any) -> Spiral:
    """The spiral stored at `key` (a `t:{T}:spiral:<id>` key)."""
    value = _readable(key, value)
    try:
        found = Spiral.from_json(value)
    except SHAPE_ERRORS as exc:
        raise CorruptRecord(key, f"not a spiral record: {_because(exc)}") from None
    if TenantKeys(found.tenant).spiral(found.id) != key:
        raise CorruptRecord(key, f"holds spiral {found.id[:80]!r} of tenant "
                            f"{found.tenant[:80]!r}, not this key's")
    return found


def counter(key: str, value: Any) -> int:
    """The integer of a counter (`memory_count`, `spiral_count:<id>`, `store_ticks`)."""
    value = _readable(key, value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptRecord(key, "does not hold an integer counter")
    return value


def sigil_owner(key: str, value: Any) -> str:
    """The memory id a sigil entry names."""
    if type(value) is str and _ID(value) is not None:  # what validation.memory_id checks
        return value
    value = _readable(key, value)
    try:
        return validation.memory_id("value", value)
    except InvalidArgument:
        raise CorruptRecord(key, "does not hold a memory id") from None


def tombstone(key: str, value: Any) -> float:
    """A tombstone's expiry (seconds since the epoch)."""
    value = _readable(key, value)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        raise CorruptRecord(key, "does not hold a tombstone's expiry")
    return float(value)


def quarantined(key: str, value: Any) -> dict[str, Any]:
    """A quarantined record's envelope (see `quarantine`)."""
    value = _readable(key, value)
    if not (isinstance(value, dict) and isinstance(value.get("key"), str)
            and isinstance(value.get("reason"), str)):
        raise CorruptRecord(key, "is not a quarantine envelope")
    return value


#: How to read each kind of a tenant's keys, by what follows the namespace.
_PREFIXED: dict[str, Callable[[str, Any], Any]] = {
    "mem:": memory,
    "spiral:": spiral,
    "spiral_count:": counter,
    "sigil:": sigil_owner,
    "tomb:": tombstone,
    "quarantine:": quarantined,
}
_EXACT: dict[str, Callable[[str, Any], Any]] = {"memory_count": counter,
                                                "store_ticks": counter}


def reader(key: str) -> Callable[[str, Any], Any] | None:
    """How to read `key`, a key of some tenant; None for a key of no kind this version
    knows (or not a tenant's: a marker, a lock)."""
    split = split_tenant_key(key)
    if split is None:
        return None
    _, rest = split
    if rest in _EXACT:
        return _EXACT[rest]
    return next((read for prefix, read in _PREFIXED.items()
                 if rest.startswith(prefix) and rest != prefix), None)


def problem(key: str, value: Any) -> str | None:
    """Why `value` is not what `key` holds (None: it is, or the key is of no kind this
    version reads)."""
    read = reader(key)
    if read is None:
        return None
    try:
        read(key, value)
    except CorruptRecord as exc:
        return exc.reason
    return None
