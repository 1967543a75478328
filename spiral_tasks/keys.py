"""The key layout, in one place. Every key of a tenant lives under `t:{<tenant>}:`.

The braces are a Redis Cluster hash tag: all of a tenant's keys hash to one slot, so a
tenant's commit can be one MULTI/EXEC or Lua script even on a cluster.

    t:{acme}:mem:<memory id>              memory record (JSON)
    t:{acme}:spiral:<spiral id>           spiral record (JSON)
    t:{acme}:sigil:<sha256 of a sigil>    memory id the sigil belongs to (security/sigils.py)
    t:{acme}:spiral_count:<spiral id>     node counter of a spiral (INCRBY)
    t:{acme}:memory_count                 the tenant's memory total (INCRBY)
    t:{acme}:gcq                          GC priority queue (an ordered index / ZSET)
    t:{acme}:tomb:<memory id>             tombstone of a collected memory (its expiry)
    t:{acme}:tombq                        tombstones by expiry (an ordered index / ZSET)
    t:{acme}:store_ticks                  stores so far: every Nth triggers a GC (INCRBY)
    t:{acme}:lock                         the tenant's lock (Redis coordination)
    t:{acme}:generation                   Redis: a new unique token per commit (cache validity)
    t:{acme}:quarantine:<rest>@<ms>       a corrupt record moved aside by a rebuild: its
                                          key (t:{acme}:<rest>), why, and its bytes
    t:{acme}:audit                        the audit log (a Redis stream; a LevelDB key range)
    t:{acme}:audit_head                   the audit log's last entry: seq, hash, signature
    t:{acme}:audit_checkpoint             the last entry trimmed by retention, signed
    tenants:<tenant>                      marker: the tenant exists (lists tenants for GC)
    meta:sigil_secret                     generated sigil key when none is configured
    meta:sigil_keyring                    its other accepted keys (rotation's grace period)
    meta:audit_key                        generated audit signing key when none is configured
    meta:gc_cursor                        the tenant where the last full GC run stopped
    claim:<name>                          "done recently" marks (one startup rebuild per window)
    meta:{sealing}:key:<key id>           encryption at rest: memory records may be sealed
                                          under this key id (a store opened without it
                                          refuses to start)
    meta:{sealing}:plain                  encryption at rest: unsealed memory records from
                                          before a key was configured may remain
    __dir__:{acme}                        Redis only: names of every key tagged {acme}
    __dir__                               Redis only: names of untagged keys
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

TENANTS_PREFIX = "tenants:"
SIGIL_SECRET_KEY = "meta:sigil_secret"
SIGIL_KEYRING_KEY = "meta:sigil_keyring"
AUDIT_KEY = "meta:audit_key"
GC_CURSOR_KEY = "meta:gc_cursor"
DIRECTORY = "__dir__"
#: The sealing markers carry a hash tag of their own, so Redis lists them from a small
#: directory instead of a SCAN over the whole key space.
SEALING_PREFIX = "meta:{sealing}:"
SEALING_PLAIN_KEY = SEALING_PREFIX + "plain"
_SEALING_KEY_PREFIX = SEALING_PREFIX + "key:"
_NAMESPACE_HEAD = "t:{"
_MEMORY_RECORD = "}:mem:"
_QUARANTINED_MEMORY = "}:quarantine:mem:"


def claim_key(name: str) -> str:
    return f"claim:{name}"


def split_tenant_key(key: str) -> tuple[str, str] | None:
    """(tenant, what follows the namespace) of a tenant's key; None for any other."""
    if not key.startswith("t:{"):
        return None
    end = key.find("}:", 3)
    if end < 0:
        return None
    return key[3:end], key[end + 2:]


def hash_tag(key: str) -> str | None:
    """The Redis Cluster hash tag of `key`: the text between the first `{` and the
    next `}`, if not empty."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1:end]


def directory_of(key: str) -> str:
    """The Redis directory listing `key`: one per hash tag, in the tag's slot."""
    tag = hash_tag(key)
    return DIRECTORY if tag is None else f"{DIRECTORY}:{{{tag}}}"


def tenant_marker(tenant: str) -> str:
    return TENANTS_PREFIX + tenant


def sealing_marker(key_id: str) -> str:
    """The marker saying memory records may be sealed under `key_id`."""
    return _SEALING_KEY_PREFIX + key_id


def sealing_key_id(marker: str) -> str | None:
    """The key id a sealing marker names (None: the `plain` marker, or not a marker)."""
    return marker[len(_SEALING_KEY_PREFIX):] if marker.startswith(_SEALING_KEY_PREFIX) \
        else None


def is_memory_record(key: str) -> bool:
    """Whether `key` is a memory record, `t:{<tenant>}:mem:<id>`. A tenant name holds no
    `}`, so the first `}` closes the tenant's tag."""
    return key.startswith(_NAMESPACE_HEAD) and \
        key.find(_MEMORY_RECORD) == key.find("}") > len(_NAMESPACE_HEAD)


def holds_memory_data(key: str) -> bool:
    """Whether `key` holds a memory's content and metadata, the values sealed at rest:
    a memory record, or one a rebuild quarantined (`t:{<tenant>}:quarantine:mem:...`)."""
    close = key.find("}")
    if not key.startswith(_NAMESPACE_HEAD) or close <= len(_NAMESPACE_HEAD):
        return False
    return key.startswith(_MEMORY_RECORD, close) or \
        key.startswith(_QUARANTINED_MEMORY, close)


@dataclass(frozen=True)
class TenantKeys:
    tenant: str

    @functools.cached_property
    def namespace(self) -> str:
        """Made once per instance: every other key starts with it."""
        return f"t:{{{self.tenant}}}:"

    @functools.cached_property
    def memories(self) -> str:
        return self.namespace + "mem:"

    @functools.cached_property
    def spirals(self) -> str:
        return self.namespace + "spiral:"

    @functools.cached_property
    def sigils(self) -> str:
        return self.namespace + "sigil:"

    @functools.cached_property
    def spiral_counts(self) -> str:
        return self.namespace + "spiral_count:"

    @functools.cached_property
    def memory_count(self) -> str:
        return self.namespace + "memory_count"

    @functools.cached_property
    def gc_queue(self) -> str:
        return self.namespace + "gcq"

    @property
    def tombstones(self) -> str:
        return self.namespace + "tomb:"

    @property
    def tombstone_queue(self) -> str:
        return self.namespace + "tombq"

    @functools.cached_property
    def store_ticks(self) -> str:
        return self.namespace + "store_ticks"

    @property
    def lock(self) -> str:
        return self.namespace + "lock"

    @property
    def generation(self) -> str:
        return self.namespace + "generation"

    @property
    def quarantine(self) -> str:
        return self.namespace + "quarantine:"

    @property
    def quarantined_memories(self) -> str:
        """Where a rebuild's quarantined memory records are (sealed like memory records)."""
        return self.quarantine + "mem:"

    def quarantined(self, key: str, at_ms: int) -> str:
        """Where a rebuild moves the corrupt record at `key` (one of this tenant's):
        its place in the namespace and the moment, so a record quarantined twice keeps
        both copies."""
        return f"{self.quarantine}{key[len(self.namespace):]}@{at_ms}"

    @functools.cached_property
    def audit_log(self) -> str:
        return self.namespace + "audit"

    @functools.cached_property
    def audit_head(self) -> str:
        return self.namespace + "audit_head"

    @property
    def audit_checkpoint(self) -> str:
        return self.namespace + "audit_checkpoint"

    @property
    def indexes(self) -> tuple[str, ...]:
        """Every ordered index of the tenant (storage cannot list indexes)."""
        return (self.gc_queue, self.tombstone_queue)

    @property
    def coordination(self) -> tuple[str, ...]:
        """Keys that say who may write now, or what was done, not what is stored: a
        backup leaves them and a restore keeps them (the audit log's chain goes on
        through a restore, which it records)."""
        return (self.lock, self.generation, self.audit_head, self.audit_checkpoint)

    def tombstone(self, memory_id: str) -> str:
        return self.tombstones + memory_id

    def memory(self, memory_id: str) -> str:
        return self.memories + memory_id

    def spiral(self, spiral_id: str) -> str:
        return self.spirals + spiral_id

    def sigil(self, name: str) -> str:
        """The index entry named `name` (a sigil's `index_name`, never the sigil)."""
        return self.sigils + name

    def spiral_count(self, spiral_id: str) -> str:
        return self.spiral_counts + spiral_id


@functools.lru_cache(maxsize=4096)
def tenant_keys(tenant: str) -> TenantKeys:
    """The keys of `tenant`, made once while it is in use: for the store path, which
    would otherwise make them and their namespace again for every batch."""
    return TenantKeys(tenant)
