"""The backup file: JSON lines, a header first, a checksum last.

    {"format": "spiral-backup", "version": 1, "created": ..., "source": ...,
     "tenants": {"acme": {"keys": 41, "index_entries": 30}, ...},
     "totals": {...}, "sigil": {"fingerprint": ..., "secret": ..., "others": [...]
                                  (secret and others only if asked)}}
    {"tenant": "acme", "key": "t:{acme}:mem:m1", "value": {...}}
    {"tenant": "acme", "index": "t:{acme}:gcq", "member": "m1", "score": 1712.5}
    ...
    {"checksum": "sha256:<hex of every line above, newlines included>", "lines": N}

Taken by a process with an encryption key, a file carries its memory records sealed,
as the store does, under that process's key (version 2, and a `sealing` header naming
the key id): `{"tenant": ..., "key": "t:{acme}:mem:m1", "sealed": "<base64>"}`. A
backup is data at rest too: a sealed store's backup never holds its memories in the
clear. Verifying or restoring such a file opens every record, so it needs that key
(`SPIRAL_ENCRYPTION_KEY`, or `SPIRAL_DECRYPTION_KEYS` beside another key); a record
that does not open is refused, naming its line. Without a key, version 1 as before.

Each line is canonical JSON (sorted keys), so the same data always gives the same
lines. A tenant's lines are contiguous and in the header's order. `verify` reads a
whole file and refuses it, naming the line, when anything is off: a missing or
changed trailer (a truncated or edited file), a checksum that does not match (one
flipped byte), a header whose counts or tenants disagree with the lines, a key
outside its tenant's namespace, a value that does not decode as what its key holds.
A restore calls it before it writes anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from spiral_tasks import validation
from spiral_tasks.errors import InvalidArgument, SealBroken, SpiralError
from spiral_tasks.keys import TenantKeys, holds_memory_data, tenant_marker
from spiral_tasks.records import problem as record_problem
from spiral_tasks.records import reader as record_reader
from spiral_tasks.security import envelope
from spiral_tasks.storage import codec
from spiral_tasks.storage.codec import PLAIN, Codec

FORMAT = "spiral-backup"
VERSION = 1
#: The version of a file whose memory records are sealed.
SEALED_VERSION = 2
VERSIONS = (VERSION, SEALED_VERSION)
CHECKSUM_PREFIX = "sha256:"


class BackupRefused(SpiralError):
    """The file is not a complete, intact backup this version can restore: nothing
    was written."""


@dataclass(frozen=True)
class KeyLine:
    """A key of a tenant (its records, spirals, counters, sigils, tombstones, store
    ticks) or the tenant's marker, with its value."""

    tenant: str
    key: str
    value: Any

    def to_json(self, values: Codec = PLAIN) -> dict[str, Any]:
        """The line; a memory record sealed if `values` seals."""
        if values.seals and holds_memory_data(self.key):
            sealed = values.encode(self.key, self.value)
            return {"tenant": self.tenant, "key": self.key,
                    "sealed": base64.b64encode(sealed).decode()}
        return {"tenant": self.tenant, "key": self.key, "value": self.value}


@dataclass(frozen=True)
class IndexLine:
    """An entry of one of a tenant's ordered indexes (the GC queue, the tombstones'
    expiry queue), with its score."""

    tenant: str
    index: str
    member: str
    score: float

    def to_json(self, values: Codec = PLAIN) -> dict[str, Any]:
        """The line (an index entry is never sealed: scores and ids only)."""
        return {"tenant": self.tenant, "index": self.index, "member": self.member,
                "score": self.score}


Line = KeyLine | IndexLine


@dataclass
class TenantCounts:
    keys: int = 0
    index_entries: int = 0

    def count(self, line: Line) -> None:
        if isinstance(line, KeyLine):
            self.keys += 1
        else:
            self.index_entries += 1

    def to_json(self) -> dict[str, int]:
        return {"keys": self.keys, "index_entries": self.index_entries}


@dataclass
class Header:
    created: str
    source: str
    tenants: dict[str, TenantCounts] = field(default_factory=dict)
    sigil_fingerprint: str = ""
    sigil_secret: str | None = None
    #: The other keys the source accepted ({"secret", "until"}), carried with the secret.
    sigil_others: list[dict[str, Any]] = field(default_factory=list)
    #: The key id the file's memory records are sealed under (None: in the clear).
    sealing_key_id: str | None = None

    @property
    def keys(self) -> int:
        return sum(c.keys for c in self.tenants.values())

    @property
    def index_entries(self) -> int:
        return sum(c.index_entries for c in self.tenants.values())

    def to_json(self) -> dict[str, Any]:
        sigil: dict[str, Any] = {"fingerprint": self.sigil_fingerprint}
        if self.sigil_secret is not None:
            sigil["secret"] = self.sigil_secret
        if self.sigil_others:
            sigil["others"] = self.sigil_others
        data = {"format": FORMAT, "version": VERSION, "created": self.created,
                "source": self.source,
                "tenants": {t: c.to_json() for t, c in self.tenants.items()},
                "totals": {"tenants": len(self.tenants), "keys": self.keys,
                           "index_entries": self.index_entries},
                "sigil": sigil}
        if self.sealing_key_id is not None:
            data.update(version=SEALED_VERSION, sealing={"key_id": self.sealing_key_id})
        return data

    @classmethod
    def from_json(cls, data: Any) -> Header:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupRefused(f"line 1 is not a {FORMAT} header")
        if data.get("version") not in VERSIONS:
            raise BackupRefused(f"line 1: version {data.get('version')!r} is not one this "
                                "program restores (it restores versions "
                                f"{', '.join(map(str, VERSIONS))})")
        try:
            tenants = {validation.name("tenant", t): TenantCounts(int(c["keys"]),
                                                                  int(c["index_entries"]))
                       for t, c in data["tenants"].items()}
            sigil = data["sigil"]
            others = sigil.get("others", [])
            if not isinstance(others, list) or not all(
                    isinstance(o, dict) and isinstance(o.get("secret"), str)
                    and (o.get("until") is None or _is_number(o.get("until")))
                    for o in others):
                raise ValueError("sigil.others is not a list of keys")
            sealing = data["sealing"]["key_id"] if data["version"] == SEALED_VERSION \
                else None
            header = cls(str(data["created"]), str(data["source"]), tenants,
                         str(sigil["fingerprint"]), sigil.get("secret"), others,
                         None if sealing is None else str(sealing))
            totals = data["totals"]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackupRefused(f"line 1: a malformed header ({exc})") from exc
        if totals != header.to_json()["totals"]:
            raise BackupRefused("line 1: the header's totals disagree with its tenants")
        return header


def encode(data: dict[str, Any]) -> bytes:
    """One line: canonical JSON and a newline."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS) + b"\n"


def trailer(digest: str, lines: int) -> bytes:
    return encode({"checksum": CHECKSUM_PREFIX + digest, "lines": lines})


# --- reading -----------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def check_key_value(tenant: str, key: str, value: Any) -> str | None:
    """Why `key` with `value` cannot be a key of `tenant` (None: it can). What each
    kind of key holds is `records`' to say, as for every read of storage."""
    keys = TenantKeys(tenant)
    if key == tenant_marker(tenant):
        return None
    if not key.startswith(keys.namespace):
        return f"key {key[:80]!r} is outside tenant {tenant!r}'s namespace"
    if key in keys.coordination:
        return f"key {key!r} is a lock's, never backed up"
    if record_reader(key) is None:
        return f"key {key[:80]!r} is of no kind this version knows"
    try:
        codec.encode(value)
        wrong = record_problem(key, value) is not None
    except (TypeError, ValueError):
        wrong = True
    return f"the value of {key[:80]!r} does not decode as what it holds" if wrong else None


def parse_line(raw: bytes, number: int, values: Codec = PLAIN) -> Line:
    """A record line, checked (a sealed record opened with `values`); `BackupRefused`
    naming line `number` if it is bad."""
    try:
        data = orjson.loads(raw)
        tenant = validation.name("tenant", data["tenant"])
        line: Line
        if "key" in data:
            key = str(data["key"])
            value = _opened(key, data["sealed"], values, number) if "sealed" in data \
                else data["value"]
            line, problem = KeyLine(tenant, key, value), check_key_value(tenant, key, value)
        else:
            entry = IndexLine(tenant, str(data["index"]), str(data["member"]),
                              data["score"])
            line, problem = entry, _index_problem(entry)
    except (orjson.JSONDecodeError, KeyError, TypeError, InvalidArgument) as exc:
        raise BackupRefused(f"line {number}: not a record ({exc})") from exc
    if problem:
        raise BackupRefused(f"line {number}: {problem}")
    return line


def _opened(key: str, sealed: Any, values: Codec, number: int) -> Any:
    """The value of a sealed line, opened: sealed bytes (base64) for `key` only."""
    try:
        raw = base64.b64decode(str(sealed), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BackupRefused(f"line {number}: the sealed value is not base64") from exc
    if not envelope.is_sealed(raw):
        raise BackupRefused(f"line {number}: the sealed value of {key[:80]!r} is not sealed")
    try:
        return values.decode(key, raw)
    except SealBroken as exc:
        raise BackupRefused(f"line {number}: {exc}") from exc
    except codec.UnreadableValue as exc:
        raise BackupRefused(f"line {number}: {key[:80]}: {exc}") from exc


def _index_problem(line: IndexLine) -> str | None:
    if line.index not in TenantKeys(line.tenant).indexes:
        return f"index {line.index[:80]!r} is not one of tenant {line.tenant!r}'s"
    if not _is_number(line.score):
        return f"score {line.score!r} is not a finite number"
    try:
        validation.memory_id("member", line.member)
    except InvalidArgument as exc:
        return str(exc)
    return None


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of the file, counting from 1."""
    with path.open("rb") as file:
        yield from enumerate(file, start=1)


def verify(path: Path, values: Codec = PLAIN) -> Header:
    """The file's header, once every line has been checked, sealed records opened with
    `values` (see the module's doc); `BackupRefused` with one line saying what is wrong
    otherwise. The checksum is checked first, so a damaged file is called damaged,
    whatever line it hit."""
    last = _check_integrity(path)
    header: Header | None = None
    seen: dict[str, TenantCounts] = {}
    names: set[tuple[str, str]] = set()
    for number, raw in read_lines(path):
        if number == 1:
            header = _header(raw)
        elif number < last:
            assert header is not None
            _check_record(parse_line(raw, number, values), number, header, seen, names)
    assert header is not None
    for tenant, counts in header.tenants.items():
        found = seen.get(tenant, TenantCounts())
        if found != counts:
            raise BackupRefused(f"the header counts {counts.to_json()} for tenant "
                                f"{tenant!r}, the file holds {found.to_json()}")
    return header


def _check_integrity(path: Path) -> int:
    """The number of the checksum line, once it matches every line before it."""
    digest = hashlib.sha256()
    last: tuple[int, bytes] | None = None
    for number, raw in read_lines(path):
        if last is not None:
            digest.update(last[1])
        last = (number, raw)
    if last is None:
        raise BackupRefused("the file is empty")
    number, raw = last
    try:
        data = orjson.loads(raw)
        checksum, lines = data["checksum"], data["lines"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise BackupRefused(f"line {number}: the file does not end with its checksum "
                            "line: truncated or edited") from exc
    if lines != number - 1 or number < 2:
        raise BackupRefused(f"line {number}: the checksum line counts {lines} lines before "
                            f"it, the file has {number - 1}: truncated or edited")
    if checksum != CHECKSUM_PREFIX + digest.hexdigest():
        raise BackupRefused(f"checksum mismatch: the file says {str(checksum)[:80]}, its "
                            f"lines hash to {CHECKSUM_PREFIX}{digest.hexdigest()}: the file "
                            "was changed or damaged")
    return number


def _header(raw: bytes) -> Header:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BackupRefused(f"line 1 is not a {FORMAT} header ({exc})") from exc
    return Header.from_json(data)


def _check_record(line: Line, number: int, header: Header, seen: dict[str, TenantCounts],
                  names: set[tuple[str, str]]) -> None:
    """A record in its place: its tenant in the header, in the header's order, its
    lines together, no name twice."""
    if line.tenant not in header.tenants:
        raise BackupRefused(f"line {number}: tenant {line.tenant!r} is not in the header")
    if line.tenant not in seen:
        order = list(header.tenants)
        if len(seen) >= len(order) or order[len(seen)] != line.tenant:
            raise BackupRefused(f"line {number}: tenant {line.tenant!r} is out of the "
                                "header's order")
        seen[line.tenant] = TenantCounts()
    elif next(reversed(seen)) != line.tenant:
        raise BackupRefused(f"line {number}: tenant {line.tenant!r}'s lines are not "
                            "together")
    name = line.key if isinstance(line, KeyLine) else f"{line.index}\x00{line.member}"
    if (line.tenant, name) in names:
        raise BackupRefused(f"line {number}: a second line for {name[:80]!r}")
    names.add((line.tenant, name))
    seen[line.tenant].count(line)


def records(path: Path, values: Codec = PLAIN) -> Iterator[Line]:
    """The record lines of a file `verify` accepted, in order."""
    for number, raw in read_lines(path):
        if number == 1:
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BackupRefused(f"line {number} changed since it was verified") from exc
        if "checksum" in data:
            return
        yield parse_line(raw, number, values)
