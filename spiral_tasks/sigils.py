"""Sigils: unguessable handles of memories, keyed HMACs of tenant and id.

The original hashed the content, so equal contents collided and overwrote each other.
Here a sigil is HMAC-SHA256(secret, tenant NUL id), truncated to 128 bits: distinct for
every memory, and unforgeable without the secret.

Without SPIRAL_SIGIL_SECRET, a secret is generated and kept in storage. Processes that
start together on an empty store race to create it; storage's atomic set-if-absent
makes the first one win and every process use the winner, so no process can keep a
secret of its own whose sigils no other process would recognise.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from spiral_tasks.keys import SIGIL_SECRET_KEY
from spiral_tasks.storage.base import Storage

SIGIL_HEX_CHARS = 32
#: What a fingerprint signs: no tenant name can contain a space, so no sigil equals it.
FINGERPRINT_MESSAGE = b"spiral sigil key fingerprint"


class Sigils:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def load(cls, storage: Storage, configured: str | None) -> Sigils:
        """The configured secret, else the one kept in storage (created if absent)."""
        if configured:
            return cls(configured.encode())
        stored = storage.get(SIGIL_SECRET_KEY)
        if not isinstance(stored, str):
            stored = storage.set_if_absent(SIGIL_SECRET_KEY, secrets.token_hex(32))
        if not isinstance(stored, str):
            raise ValueError(f"{SIGIL_SECRET_KEY} does not hold a secret")
        return cls(stored.encode())

    @property
    def secret(self) -> str:
        """The key itself: for a backup asked to carry it (`spiral backup
        --with-secret`), never for a log."""
        return self._secret.decode()

    @property
    def fingerprint(self) -> str:
        """Names the key without revealing it: two stores sign alike iff their
        fingerprints match (a backup records it, a restore compares)."""
        return hmac.new(self._secret, FINGERPRINT_MESSAGE,
                        hashlib.sha256).hexdigest()[:SIGIL_HEX_CHARS]

    def sign(self, tenant: str, memory_id: str) -> str:
        message = f"{tenant}\x00{memory_id}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:SIGIL_HEX_CHARS]
