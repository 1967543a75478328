"""The bytes of a sealed value: what it says about itself before it is opened.

    0x00 'S' 0x01 | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext + tag

The first byte is NUL, which no JSON text starts with, so a sealed value and a plain
one are told apart by their first byte, whatever the codec that reads them. The key id
says which key sealed it, so a process lacking that key says so instead of trying the
wrong one. The header (lead, version, key id) is authenticated with the value: it is
part of the associated data (see `sealing`), so changing the key id breaks the seal.

This module knows the layout only, not the cipher, so a process without the
`cryptography` package (or without a key) can still recognize a sealed value and name
its key.
"""

from __future__ import annotations

from dataclasses import dataclass

LEAD = b"\x00"
HEADER = LEAD + b"S\x01"
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
PREFIX_BYTES = len(HEADER) + KEY_ID_BYTES
OVERHEAD = PREFIX_BYTES + NONCE_BYTES + TAG_BYTES


class BadEnvelope(ValueError):
    """Stored bytes that start like a sealed value but are not one this version reads:
    the record's fault (the codec reports it as an unreadable value)."""


@dataclass(frozen=True)
class Envelope:
    key_id: str
    #: Lead, version and key id: authenticated with the value.
    header: bytes
    nonce: bytes
    body: bytes


def is_sealed(raw: bytes) -> bool:
    return raw[:1] == LEAD


def pack(key_id: bytes, nonce: bytes, body: bytes) -> bytes:
    return HEADER + key_id + nonce + body


def header_for(key_id: bytes) -> bytes:
    return HEADER + key_id


def unpack(key: str, raw: bytes) -> Envelope:
    """The parts of the sealed value stored at `key`; `BadEnvelope` if it is not one this
    version can read (a truncated value, another format)."""
    if raw[:len(HEADER)] != HEADER:
        raise BadEnvelope(f"a sealed value of an unknown format (header "
                          f"{raw[:len(HEADER)].hex()})")
    if len(raw) < OVERHEAD:
        raise BadEnvelope(f"a truncated sealed value ({len(raw)} bytes, at least "
                          f"{OVERHEAD} expected)")
    key_id = raw[len(HEADER):PREFIX_BYTES]
    return Envelope(key_id.hex(), raw[:PREFIX_BYTES], raw[PREFIX_BYTES:PREFIX_BYTES +
                                                          NONCE_BYTES],
                    raw[PREFIX_BYTES + NONCE_BYTES:])


def key_id_of(raw: bytes) -> str | None:
    """The key id a stored value names (hex; what there is of it in a truncated one),
    or None for a plain value."""
    return raw[len(HEADER):PREFIX_BYTES].hex() if is_sealed(raw) else None
