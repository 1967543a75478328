"""Opening a store with the codec its keys call for, and the markers that say so.

A store remembers, in markers beside its data (`keys.SEALING_PREFIX`), every key id
its memory records may be sealed under, and whether records from before any key was
configured may remain in the clear. Opening a store checks them against the keys this
process holds, before anything is read or written:

- no key, and the store has key markers: refused (`EncryptionKeyMissing`), so a
  process missing its key never starts, instead of failing on every sealed record or
  writing records in the clear into a sealed store;
- a key, and the store has markers of key ids this process cannot open (a wrong key,
  or an old key left out during a rotation): refused, likewise;
- a key: its id is marked (before this process seals anything), and when the store
  had no markers but holds tenants (data from before the key), it is marked `plain`:
  unsealed records are then read as they are until `spiral rotate-key` has sealed
  them all and removed the mark. A store without that mark refuses unsealed records;
- keys that only open (`SPIRAL_DECRYPTION_KEYS` alone): the process reads sealed
  records and writes in the clear, so the store is marked `plain`. That is the first
  step of turning encryption on while workers run: once every process can open what
  the others will seal, they are given the sealing key. A store sealed throughout
  (key markers, no `plain` mark) refuses such a process: it would write records back
  in the clear.

`cryptography` is imported only when a key is configured: the storage layer and the
engine import no cipher, and a process without a key (a producer, a test) loads none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from spiral_tasks.config import EncryptionSettings
from spiral_tasks.errors import EncryptionKeyMissing
from spiral_tasks.keys import (
    SEALING_PLAIN_KEY,
    SEALING_PREFIX,
    TENANTS_PREFIX,
    sealing_key_id,
    sealing_marker,
)
from spiral_tasks.security.encryption_keys import EncryptionKeys
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.codec import PLAIN, Codec


@dataclass(frozen=True)
class Markers:
    """What a store's markers say: the key ids its records may be sealed under, and
    whether some may still be unsealed."""

    key_ids: frozenset[str]
    plain: bool


def read_markers(storage: Storage) -> Markers:
    names = storage.keys(SEALING_PREFIX)
    ids = frozenset(i for name in names if (i := sealing_key_id(name)) is not None)
    return Markers(ids, SEALING_PLAIN_KEY in names)


def keys_for(encryption: EncryptionSettings) -> EncryptionKeys | None:
    if not encryption.enabled:
        return None
    return EncryptionKeys(encryption.key, encryption.decryption_keys)


def codec_for(encryption: EncryptionSettings, *, accept_plain: bool = True) -> Codec:
    """The codec of a process with these settings, without a store (to read a backup
    file): sealing with its key if it has one, else plain."""
    keyring = keys_for(encryption)
    if keyring is None:
        return PLAIN
    from spiral_tasks.security.sealing import SealingCodec  # noqa: PLC0415 - see the doc

    return SealingCodec(keyring, accept_plain=accept_plain)


def seal_storage(storage: Storage, encryption: EncryptionSettings) -> Codec:
    """Check `storage`'s markers against this process's keys, mark the sealing key,
    install the codec and return it; `EncryptionKeyMissing` (nothing written) when the
    store needs a key this process lacks."""
    markers = read_markers(storage)
    keyring = keys_for(encryption)
    if keyring is None:
        if markers.key_ids:
            raise EncryptionKeyMissing(
                f"the store's memory records are sealed (key id "
                f"{', '.join(sorted(markers.key_ids))}) and this process has no encryption "
                "key: set SPIRAL_ENCRYPTION_KEY or SPIRAL_ENCRYPTION_KEY_FILE; the store "
                "was not opened")
        storage.codec = PLAIN
        return PLAIN
    missing = markers.key_ids - set(keyring.ids)
    if missing:
        raise EncryptionKeyMissing(
            f"the store's memory records may be sealed under key id "
            f"{', '.join(sorted(missing))}, which this process does not have (its keys: "
            f"{', '.join(keyring.ids)}): SPIRAL_ENCRYPTION_KEY is wrong, or a key still in "
            "use is missing from SPIRAL_DECRYPTION_KEYS; the store was not opened")
    current = keyring.current
    if current is None and markers.key_ids and not markers.plain:
        raise EncryptionKeyMissing(
            "the store's memory records are all sealed, and this process has keys that "
            "only open (SPIRAL_DECRYPTION_KEYS) and none to seal with: it would write "
            "records back in the clear; set SPIRAL_ENCRYPTION_KEY; the store was not "
            "opened")
    plain = markers.plain or current is None or (
        not markers.key_ids and bool(storage.keys(TENANTS_PREFIX)))
    since = {"since": datetime.now(UTC).isoformat(timespec="seconds")}
    if plain and not markers.plain:  # first: a crash in between leaves a harmless mark
        storage.set_if_absent(SEALING_PLAIN_KEY, since)
    if current is not None and current not in markers.key_ids:
        storage.set_if_absent(sealing_marker(current), since)
    codec = codec_for(encryption, accept_plain=plain)
    storage.codec = codec
    return codec
