"""Values <-> bytes. Strict JSON: what cannot round-trip exactly is refused.

The original stored live references in memory and let a JSON encoder silently turn
tuples into lists, int keys into strings and NaN into null. Here a value is checked
first, so a refusal happens before any write. This module is the one place where
values are encoded: every backend, and the Redis coordinator's reads and commits, go
through a store's `Codec`, which is where sealing (encryption at rest) happens. The
plain `Codec` here writes JSON and refuses to read a sealed value as anything; the
sealing one (`security.sealing.SealingCodec`) seals and opens memory records, and is
installed when a key is configured, so importing storage never imports a cipher.
Decoding raises `UnreadableValue` for bytes that are not a value (the record is bad,
not the process), and `SealBroken` when this process lacks the key a record needs
(the process is misconfigured, not the record).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from spiral_tasks.errors import SealBroken
from spiral_tasks.security import envelope

MAX_NESTING = 250  # orjson stops at 255
_INT_RANGE = (-(2**63), 2**64 - 1)


#: Types orjson writes exactly or refuses (a lone surrogate, an int beyond 64 bits): a
#: value of one of these needs no round trip to prove it comes back equal.
_EXACT_SCALARS = frozenset({str, int, bool, type(None)})


def encode(value: Any) -> bytes:
    """JSON bytes of `value`, or TypeError/ValueError if it would not come back equal.

    Fast path: orjson encodes, and the value must equal its own decoding (this catches
    NaN, tuples and the other types orjson accepts but JSON cannot keep); a plain
    string or integer needs no decoding, since orjson refuses what it cannot keep of
    those. Only when that fails does the slower walk run, to say precisely what is
    wrong.
    """
    try:
        raw = orjson.dumps(value)
        if type(value) in _EXACT_SCALARS or orjson.loads(raw) == value:
            return raw
    except (TypeError, ValueError):
        pass
    _check(value, 0)
    raise ValueError("value does not survive a JSON round trip")


def encode_checked(value: Any) -> bytes:
    """JSON bytes of a value that comes back equal by construction (`base.CheckedPut`):
    encoded once, without the round trip `encode` makes to prove it."""
    return orjson.dumps(value)


class UnreadableValue(ValueError):
    """Stored bytes that do not decode into a value: not JSON, not UTF-8, cut short, a
    sealed value that fails its tag or is not one this version reads. The fault is the
    record's, so rebuild and repair quarantine it; every layer above turns this into
    `CorruptRecord` naming the key.

    Raise it (or a subclass) only for a bad record. A process that cannot decode
    anything (its key is missing, or it is the wrong key) must raise something else:
    that is a configuration fault, and quarantining every record for it would be
    wrong."""


def decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UnreadableValue(f"not JSON ({exc})") from exc


class Codec:
    """A store's values <-> its bytes, by key: plain JSON. A value found sealed is
    refused with one clear error (`SealBroken`: this process has no key), never handed
    to the JSON decoder as garbage, nor called corrupt."""

    #: Whether this codec seals (a process with an encryption key), and under which
    #: key id.
    seals: bool = False
    sealing_key_id: str | None = None

    def encode(self, key: str, value: Any) -> bytes:
        """The bytes stored for `value` at `key`, or TypeError/ValueError if the value
        would not come back equal (see `encode`)."""
        return self.wrap(key, encode(value))

    def encode_checked(self, key: str, value: Any) -> bytes:
        """Like `encode`, for a value that comes back equal by construction (see
        `base.CheckedPut`): encoded once, without the round trip that proves it."""
        return self.wrap(key, orjson.dumps(value))  # `encode_checked`, a call fewer

    def wrap(self, key: str, raw: bytes) -> bytes:
        """What is stored at `key` for the JSON `raw`: here, the JSON itself."""
        return raw

    def decode(self, key: str, raw: bytes) -> Any:
        if envelope.is_sealed(raw):
            try:
                envelope.unpack(key, raw)
            except envelope.BadEnvelope as exc:  # not a sealed value: bad bytes
                raise UnreadableValue(str(exc)) from None
            raise SealBroken(
                f"{key[:120]} holds a value sealed under key id {envelope.key_id_of(raw)}, "
                "and this process has no encryption key: set SPIRAL_ENCRYPTION_KEY or "
                "SPIRAL_ENCRYPTION_KEY_FILE")
        return decode(raw)


#: The codec of a store opened without an encryption key.
PLAIN = Codec()


def _check(value: Any, depth: int) -> None:
    if depth > MAX_NESTING:
        raise ValueError(f"value is nested deeper than {MAX_NESTING} levels")
    if value is None or isinstance(value, str | bool):
        if isinstance(value, str):
            _check_text(value)
        return
    if isinstance(value, int):
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise ValueError(f"integer {value} is outside the 64-bit range JSON keeps exactly")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        return
    if isinstance(value, list):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, got {type(key).__name__}")
            _check_text(key)
            _check(item, depth + 1)
        return
    raise TypeError(f"{type(value).__name__} is not a JSON type "
                    "(use dict, list, str, int, float, bool or None)")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("string is not valid Unicode (lone surrogate)") from None
