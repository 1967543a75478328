"""Sealing memory records with AES-256-GCM: the codec of a process with a key.

What is sealed: every memory record (`t:{<tenant>}:mem:<id>`: content, type, depth,
associations, position, sigil, times, counts, strength) and every memory record a
rebuild quarantined (`t:{<tenant>}:quarantine:mem:...`), in every backend, because
every value passes through the store's codec on its way to bytes and back. What stays
in the clear, and why: counters (`memory_count`, `spiral_count:*`, `store_ticks`),
which Redis's scripts add to in place and check are integers; the GC queue and the
tombstones' queue, whose scores Redis and LevelDB order by and whose members are
memory ids, already in the key names; spiral records (statistics and free slots,
read by every store's lock round trip and by the rebuild); sigil entries and
tombstones (a memory id, an expiry time); the tenant markers. None of these holds a
memory's content or metadata, and each is read or ordered by the storage itself.

A sealed value (`envelope`) is `header | nonce | ciphertext + tag`, with a fresh
random 96-bit nonce per value. The associated data is the header (which names the
key id) followed by the storage key itself, `t:{<tenant>}:mem:<id>`: so a sealed
value copied under another memory id or into another tenant does not open, nor does
one whose key id was edited. Opening never guesses: a value names its key. Two kinds
of refusal, told apart because a rebuild quarantines one and must never quarantine
the other: a record under a key this process lacks, or in the clear where the store
seals, is `SealBroken` (the process may simply be missing a key: a configuration
fault, which stops the operation and the rebuild with one line naming the key id); a
value that fails its tag, is cut short or is of an unknown format is `UnreadableValue`
(the record's fault: a `CorruptRecord` naming the key, quarantined by a rebuild).
"""

from __future__ import annotations

import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from spiral_tasks.errors import SealBroken
from spiral_tasks.keys import holds_memory_data
from spiral_tasks.security import envelope
from spiral_tasks.security.encryption_keys import EncryptionKeys
from spiral_tasks.storage.codec import Codec, UnreadableValue, decode

#: Values AES-GCM may seal under one key with random nonces before the chance of a
#: repeated nonce passes 2^-32 (NIST SP 800-38D): rotate well before.
SEALS_PER_KEY = 2**32


class SealingCodec(Codec):
    """JSON, with memory records sealed under the keyring's sealing key and opened under
    whichever of its keys sealed them. A keyring without a sealing key opens sealed
    records and writes them in the clear (the first step of turning encryption on).

    `accept_plain`: an unsealed memory record is read as it is (a store that held data
    before a key was configured, until `spiral rotate-key` has sealed it all); without
    it, one is refused, so nobody can slip a forged record in the clear into a store
    that seals."""

    def __init__(self, keyring: EncryptionKeys, *, accept_plain: bool = False) -> None:
        self.keyring = keyring
        self.sealing_key_id = keyring.current
        self.seals = keyring.sealing_key is not None
        self.accept_plain = accept_plain or not self.seals
        self._header = b""
        self._sealer: AESGCM | None = None
        if keyring.sealing_id is not None and keyring.sealing_key is not None:
            self._header = envelope.header_for(keyring.sealing_id)
            self._sealer = AESGCM(keyring.sealing_key)
        self._openers = {key_id: AESGCM(key) for key_id in keyring.ids
                         if (key := keyring.key(key_id)) is not None}

    def wrap(self, key: str, raw: bytes) -> bytes:
        return self.seal(key, raw) if self.seals and holds_memory_data(key) else raw

    def decode(self, key: str, raw: bytes) -> Any:
        if envelope.is_sealed(raw):
            return decode(self.open(key, raw))
        if not self.accept_plain and holds_memory_data(key):
            # Perhaps a process that was never given the key wrote it (a configuration
            # fault, not the record's): refused, never quarantined.
            raise SealBroken(f"{key[:120]} holds an unsealed memory record, and this store "
                             "seals them: a process without the encryption key wrote it, "
                             "or it was put there behind the store's back; nothing was "
                             "read from it (spiral rotate-key seals such records)")
        return decode(raw)

    def seal(self, key: str, plain: bytes) -> bytes:
        if self._sealer is None:
            raise ValueError("this keyring has no key to seal with")
        nonce = os.urandom(envelope.NONCE_BYTES)
        body = self._sealer.encrypt(nonce, plain, self._header + key.encode())
        return self._header + nonce + body

    def open(self, key: str, raw: bytes) -> bytes:
        """The plain bytes of the sealed value stored at `key`. A value under a key this
        process lacks raises `SealBroken` (the process's fault: never quarantined); one
        that is not a sealed value this version reads, or fails its tag (altered, or
        copied from another record), raises `UnreadableValue` (the record's)."""
        try:
            found = envelope.unpack(key, raw)
        except envelope.BadEnvelope as exc:
            raise UnreadableValue(str(exc)) from None
        opener = self._openers.get(found.key_id)
        if opener is None:
            raise SealBroken(
                f"{key[:120]} is sealed under key id {found.key_id}, which this process "
                f"does not have (its keys: {', '.join(self.keyring.ids)}): configure that "
                "key (SPIRAL_ENCRYPTION_KEY, or SPIRAL_DECRYPTION_KEYS during a rotation); "
                "nothing was read from it")
        try:
            plain: bytes = opener.decrypt(found.nonce, found.body, found.header + key.encode())
        except InvalidTag:
            raise UnreadableValue(
                f"the sealed value does not open under key id {found.key_id}: it was "
                "altered, or sealed for another memory id or tenant and copied here") from None
        return plain

    def lenient(self) -> SealingCodec:
        """The same keys, reading unsealed records too (what the key rotation reads
        with: it seals whatever it finds in the clear)."""
        copy = SealingCodec.__new__(SealingCodec)
        copy.__dict__.update(self.__dict__)
        copy.accept_plain = True
        return copy
