"""Ways a backup file goes bad: cut short, a byte flipped, a header that lies (with a
checksum recomputed, so only the check that looks for it can catch it)."""

from __future__ import annotations

import hashlib

import orjson

from spiral_tasks.backup.fileformat import trailer


def reseal(lines: list[bytes]) -> bytes:
    """`lines` (header and records) with a checksum line that matches them."""
    digest = hashlib.sha256(b"".join(lines)).hexdigest()
    return b"".join(lines) + trailer(digest, len(lines))


def truncated(data: bytes) -> bytes:
    return data[:len(data) // 2]


def without_checksum(data: bytes) -> bytes:
    return b"".join(data.splitlines(keepends=True)[:-1])


def flipped(data: bytes) -> bytes:
    at = data.index(b"acme memory 3") + 5
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def miscounted(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)[:-1]
    header = orjson.loads(lines[0])
    header["tenants"]["acme"]["keys"] += 1
    header["totals"]["keys"] += 1
    return reseal([orjson.dumps(header) + b"\n", *lines[1:]])


def foreign_key(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)[:-1]
    line = orjson.loads(lines[3])
    line["key"] = line["key"].replace("{acme}", "{zeta}")
    return reseal([*lines[:3], orjson.dumps(line) + b"\n", *lines[4:]])


def wrong_version(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)[:-1]
    header = orjson.loads(lines[0])
    header["version"] = 99
    return reseal([orjson.dumps(header) + b"\n", *lines[1:]])
