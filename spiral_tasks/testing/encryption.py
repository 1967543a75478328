"""Encryption keys for tests and benchmarks: fresh random ones, as settings or as the
environment variables a worker or a command reads."""

from __future__ import annotations

import base64
import os

from spiral_tasks.config import EncryptionSettings
from spiral_tasks.security.encryption_keys import KEY_BYTES, key_id


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def text(key: bytes) -> str:
    """`key` as SPIRAL_ENCRYPTION_KEY holds it (base64)."""
    return base64.b64encode(key).decode()


def key_id_of(key: bytes) -> str:
    return key_id(key).hex()


def sealing(key: bytes, *opening: bytes) -> EncryptionSettings:
    """Settings sealing with `key`, also opening with `opening`."""
    return EncryptionSettings(key, tuple(opening))


def key_env(key: bytes, *opening: bytes) -> dict[str, str]:
    """The variables that configure `sealing(key, *opening)`."""
    env = {"SPIRAL_ENCRYPTION_KEY": text(key)}
    if opening:
        env["SPIRAL_DECRYPTION_KEYS"] = ",".join(text(k) for k in opening)
    return env
