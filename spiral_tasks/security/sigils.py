"""Sigils: capabilities to read one memory, keyed HMACs under a server secret.

The original hashed the content, so equal contents collided and overwrote each other.
Here a sigil is 40 lowercase hex characters: the signing key's id (8) and
HMAC-SHA256(key, version, tenant, memory id, created), truncated to 128 bits (32).

- The tenant is signed, so a sigil means nothing in another tenant.
- `created` is signed, so a sigil names one incarnation of a memory: an id stored
  again after its tombstone expired is a new memory, and the old sigil stays dead.
- The key id says which key to check against, so keys can be rotated: sigils of an
  old key keep working while that key is accepted (its grace period), and no sigil
  has to be tried against every key.

A key's id is the start of its fingerprint (an HMAC of a fixed text), so it names the
key without revealing it. Storage never holds a sigil as a key name: the index entry
of a sigil is named by its SHA-256 (`index_name`), so whoever reads the raw keys (a
dump, an operator's listing) learns no capability from them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from spiral_tasks.security.mac import KeyedMac

KEY_ID_CHARS = 8
MAC_CHARS = 32
SIGIL_CHARS = KEY_ID_CHARS + MAC_CHARS
SIGIL_PATTERN = re.compile(r"[0-9a-f]{40}")
#: What a fingerprint signs: no tenant name can contain a space, so no sigil's MAC
#: input equals it.
FINGERPRINT_MESSAGE = b"spiral sigil key fingerprint"
#: The MAC input's first field: sigils of another layout can never verify as these.
VERSION = b"spiral-sigil-v2"
_VERSION_TEXT = VERSION.decode()
#: Stands in for a sigil that is not one (truncated, mangled): a well-formed value, so
#: a refusal does the same work as an acceptance up to the final comparison. No index
#: entry can be named by it unless a real sigil equals it (a 2**-160 chance).
DECOY_SIGIL = "0" * SIGIL_CHARS
#: Stands in for the memory id when the index names none: not a valid memory id (it
#: must start with a letter or a digit), so no record is ever stored under it.
DECOY_ID = "-"


def index_name(sigil: str) -> str:
    """The name of `sigil`'s index entry: its SHA-256, 128 bits in hex. A sigil holds
    128 bits of MAC, so the name cannot be turned back into the sigil."""
    return hashlib.sha256(sigil.encode()).hexdigest()[:MAC_CHARS]


def index_names(sigils: Iterable[str], prefix: str = "") -> list[str]:
    """`index_name` of each sigil, in order, after `prefix` (the index's, for whole
    keys), without a Python call per sigil: the rebuild names the entry of every memory
    of a tenant, and the call cost as much as the hash."""
    sha256, chars = hashlib.sha256, MAC_CHARS
    return [prefix + sha256(sigil.encode()).hexdigest()[:chars] for sigil in sigils]


def well_formed(sigil: object) -> bool:
    return isinstance(sigil, str) and SIGIL_PATTERN.fullmatch(sigil) is not None


def key_id(sigil: str) -> str:
    return sigil[:KEY_ID_CHARS]


@dataclass(frozen=True)
class SigilKey:
    """One secret, and until when (wall-clock seconds) its sigils are accepted: None
    for the signing key and for keys accepted until removed."""

    secret: bytes
    until: float | None = None

    # Computed once per key: every sign and every lookup uses them, and a lookup must
    # cost the same whichever key (or none) its key id names.
    @functools.cached_property
    def fingerprint(self) -> str:
        """Names the key without revealing it: two stores sign alike iff their
        fingerprints match (a backup records it, a restore compares)."""
        return hmac.new(self.secret, FINGERPRINT_MESSAGE,
                        hashlib.sha256).hexdigest()[:MAC_CHARS]

    @functools.cached_property
    def kid(self) -> str:
        return self.fingerprint[:KEY_ID_CHARS]

    @functools.cached_property
    def _keyed(self) -> KeyedMac:
        """HMAC-SHA256 with the secret already absorbed: each sigil starts from it rather
        than hashing the secret again (a third of a one-shot digest's time), so a check
        costs the same under every key, the decoy's too."""
        return KeyedMac(self.secret)

    def accepted_at(self, now: float) -> bool:
        return self.until is None or now < self.until

    def sign(self, tenant: str, memory_id: str, created: float) -> str:
        # Tenant names and memory ids cannot hold NUL, so the fields cannot run into
        # each other; repr of a float is exact and the same in every process.
        if type(tenant) is str and type(memory_id) is str and type(created) is float:
            # The same bytes in one f-string (UTF-8 of the joined text is the joined
            # UTF-8; an exact str formats as itself): about 2k instructions of a store.
            message = f"{_VERSION_TEXT}\x00{tenant}\x00{memory_id}\x00{created!r}".encode()
        else:
            message = b"\x00".join((VERSION, tenant.encode(), memory_id.encode(),
                                    repr(float(created)).encode()))
        return self.kid + self._keyed.hexdigest(message)[:MAC_CHARS]  # every store


#: Checks a sigil whose key id names no accepted key: a real computation under a key
#: nobody holds, so a refusal costs what a check costs.
DECOY_KEY = SigilKey(b"spiral sigil decoy key: signs nothing")


@dataclass(frozen=True)
class Keyring:
    """The signing key and the other keys whose sigils are accepted (an old key in its
    grace period; a new key announced before it signs)."""

    active: SigilKey
    others: tuple[SigilKey, ...] = ()

    def __post_init__(self) -> None:
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise ValueError("two sigil keys share a key id (or are the same secret): "
                             "choose another secret")
        # One dict lookup finds a key whatever its place in the ring, or finds none.
        object.__setattr__(self, "_by_kid", {k.kid: k for k in self.keys})

    @property
    def keys(self) -> tuple[SigilKey, ...]:
        return (self.active, *self.others)

    @property
    def fingerprint(self) -> str:
        return self.active.fingerprint

    def sign(self, tenant: str, memory_id: str, created: float) -> str:
        return self.active.sign(tenant, memory_id, created)

    def verifier(self, kid: str, now: float) -> SigilKey | None:
        """The key whose id is `kid`, if its sigils are accepted at `now`."""
        key: SigilKey | None = self._by_kid.get(kid)  # type: ignore[attr-defined]
        return key if key is not None and key.accepted_at(now) else None

    def accepted_kids(self, now: float) -> set[str]:
        return {k.kid for k in self.keys if k.accepted_at(now)}

    def sigils_of(self, tenant: str, memory_id: str, created: float, current: str,
                  keys: Iterable[SigilKey] | None = None) -> set[str]:
        """Every sigil a memory may hold an index entry for: its current one, and one
        under each of `keys` (default: every key of the ring) that a re-signing may
        have left behind in its grace period."""
        found = {current}
        for key in self.keys if keys is None else keys:
            if key.kid != key_id(current):
                found.add(key.sign(tenant, memory_id, created))
        return found

    def accepted_sigils_of(self, tenant: str, memory_id: str, created: float,
                           current: str, now: float) -> set[str]:
        return self.sigils_of(tenant, memory_id, created, current,
                              [k for k in self.keys if k.accepted_at(now)])
