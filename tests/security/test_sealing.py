"""Encryption at rest on every backend (memory, LevelDB, a real Redis), attacked through
the bytes a backend holds: what is sealed, what opens, what is refused and how."""

from __future__ import annotations

import uuid

import pytest

from spiral_tasks.config import EncryptionSettings
from spiral_tasks.errors import CorruptRecord, EncryptionKeyMissing, SealBroken
from spiral_tasks.keys import SEALING_PLAIN_KEY, TenantKeys, sealing_marker
from spiral_tasks.security import envelope
from spiral_tasks.security.atrest import codec_for, read_markers, seal_storage
from spiral_tasks.storage.base import EncodedPut, Storage
from spiral_tasks.storage.codec import PLAIN
from spiral_tasks.testing.encryption import key_id_of, new_key, sealing
from spiral_tasks.testing.engines import engine_over
from tests.contents import populate
from tests.invariants import assert_consistent


def token() -> str:
    return f"secret-{uuid.uuid4().hex}"


def put_raw(storage: Storage, key: str, raw: bytes) -> None:
    """Write bytes behind the store's back, as someone with access to the backend."""
    storage._apply([EncodedPut(key, raw)])


def stored(storage: Storage, key: str) -> bytes:
    found = dict(storage.scan_stored(key))
    return found[key]


def test_memory_records_are_sealed_and_nothing_else_is(sealed_storage: Storage,
                                                       sealing_key: bytes) -> None:
    engine = engine_over(sealed_storage)
    content, label = token(), f"label{uuid.uuid4().hex[:8]}"
    handle = engine.store(content, type=label, tenant="acme", memory_id="m1")
    keys = TenantKeys("acme")
    everything = list(sealed_storage.scan_stored(""))
    assert everything, "the store holds nothing"
    for key, raw in everything:
        assert content.encode() not in raw, key
        assert label.encode() not in raw, key
    record = stored(sealed_storage, keys.memory("m1"))
    assert envelope.key_id_of(record) == key_id_of(sealing_key)
    # Counters stay integers Redis can add to; spirals stay readable statistics.
    assert stored(sealed_storage, keys.memory_count) == b"1"
    assert not envelope.is_sealed(stored(sealed_storage, keys.spiral(handle.stored.spiral_id)))
    memory = engine.retrieve("m1", tenant="acme")
    assert memory is not None
    assert memory.content == content
    assert memory.type == label


def test_a_sealed_record_copied_under_another_id_or_tenant_does_not_open(
        sealed_storage: Storage) -> None:
    # A short lock wait: a refusal must leave the tenant's lock free at once (on Redis
    # the record is read in the lock's own round trip), not when it expires.
    engine = engine_over(sealed_storage, wait_s=0.5)
    for tenant in ("acme", "zeta"):
        engine.store(token(), tenant=tenant, memory_id="m1")
        engine.store(token(), tenant=tenant, memory_id="m2")
    original = stored(sealed_storage, TenantKeys("acme").memory("m1"))
    for tenant, copied, untouched in [("acme", "m2", "m1"), ("zeta", "m1", "m2")]:
        put_raw(sealed_storage, TenantKeys(tenant).memory(copied), original)
        with pytest.raises(CorruptRecord, match=r"does not open.*another memory id or tenant"):
            engine.retrieve(copied, tenant=tenant)
        assert engine.retrieve(untouched, tenant=tenant) is not None  # the lock is free


@pytest.mark.parametrize(("damage", "why"), [
    (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "does not open"),
    (lambda raw: raw[:envelope.PREFIX_BYTES + 3] + b"x" + raw[envelope.PREFIX_BYTES + 4:],
     "does not open"),
    (lambda raw: raw[:envelope.OVERHEAD - 1], "truncated"),
    (lambda raw: b"\x00S\x02" + raw[3:], "unknown format"),
])
def test_an_altered_sealed_record_is_refused_never_read(sealed_storage: Storage,
                                                         damage: object, why: str) -> None:
    engine = engine_over(sealed_storage)
    engine.store(token(), tenant="acme", memory_id="m1")
    key = TenantKeys("acme").memory("m1")
    assert callable(damage)
    put_raw(sealed_storage, key, damage(stored(sealed_storage, key)))
    with pytest.raises(CorruptRecord, match=why):
        sealed_storage.get(key)


def test_a_key_id_edited_to_another_configured_key_does_not_open(
        sealed_storage: Storage, sealing_key: bytes) -> None:
    other = new_key()
    seal_storage(sealed_storage, sealing(sealing_key, other))
    engine = engine_over(sealed_storage)
    engine.store(token(), tenant="acme", memory_id="m1")
    key = TenantKeys("acme").memory("m1")
    raw = stored(sealed_storage, key)
    forged = raw[:3] + bytes.fromhex(key_id_of(other)) + raw[envelope.PREFIX_BYTES:]
    put_raw(sealed_storage, key, forged)
    with pytest.raises(CorruptRecord, match=f"does not open under key id {key_id_of(other)}"):
        sealed_storage.get(key)


def test_a_store_opened_without_its_key_or_with_a_wrong_one_refuses(
        sealed_storage: Storage, sealing_key: bytes) -> None:
    engine_over(sealed_storage).store(token(), tenant="acme", memory_id="m1")
    mine = key_id_of(sealing_key)
    with pytest.raises(EncryptionKeyMissing, match=f"sealed \\(key id {mine}\\).*no encryption"):
        seal_storage(sealed_storage, EncryptionSettings())
    with pytest.raises(EncryptionKeyMissing, match=f"under key id {mine}, which this process"):
        seal_storage(sealed_storage, sealing(new_key()))
    assert read_markers(sealed_storage).key_ids == {mine}  # refusals wrote nothing
    # The right key among others opens it.
    seal_storage(sealed_storage, sealing(new_key(), sealing_key))
    memory = engine_over(sealed_storage).retrieve("m1", tenant="acme")
    assert memory is not None


def test_a_process_without_the_key_gets_one_clear_error_never_garbage(
        sealed_storage: Storage, sealing_key: bytes) -> None:
    engine_over(sealed_storage).store(token(), tenant="acme", memory_id="m1")
    # A process that opened the store before it was sealed, and so holds no key.
    sealed_storage.codec = PLAIN
    with pytest.raises(SealBroken, match=f"sealed under key id {key_id_of(sealing_key)}, "
                                         "and this process has no encryption key"):
        engine_over(sealed_storage).retrieve("m1", tenant="acme")
    # Bytes that merely start like a sealed value are no sealed value: a corrupt record.
    put_raw(sealed_storage, TenantKeys("acme").memory("m1"), b"\x00\x01")
    with pytest.raises(CorruptRecord, match="unknown format"):
        engine_over(sealed_storage).retrieve("m1", tenant="acme")


def test_an_unsealed_record_slipped_into_a_sealed_store_is_refused(
        sealed_storage: Storage) -> None:
    engine = engine_over(sealed_storage)
    engine.store(token(), tenant="acme", memory_id="m1")
    plain = PLAIN.encode("", sealed_storage.get(TenantKeys("acme").memory("m1")))
    put_raw(sealed_storage, TenantKeys("acme").memory("m1"), plain.replace(b"secret", b"forged"))
    with pytest.raises(SealBroken, match="unsealed memory record, and this store seals"):
        engine.retrieve("m1", tenant="acme")


def test_a_key_configured_on_a_store_with_data_reads_it_and_seals_new_records(
        storage: Storage, sealing_key: bytes) -> None:
    before = token()
    engine_over(storage).store(before, tenant="acme", memory_id="old")
    seal_storage(storage, sealing(sealing_key))
    markers = read_markers(storage)
    assert markers.plain
    assert markers.key_ids == {key_id_of(sealing_key)}
    engine = engine_over(storage)
    after = engine.store(token(), tenant="acme", memory_id="new")
    old = engine.retrieve("old", tenant="acme")
    assert old is not None
    assert old.content == before
    keys = TenantKeys("acme")
    assert envelope.is_sealed(stored(storage, keys.memory(after.id)))
    # Retrieval rewrote the old record (access count): sealed now too.
    assert envelope.is_sealed(stored(storage, keys.memory("old")))
    assert storage.get(SEALING_PLAIN_KEY) is not None
    assert storage.get(sealing_marker(key_id_of(sealing_key))) is not None


def test_every_operation_works_over_sealed_records(sealed_storage: Storage) -> None:
    engine = engine_over(sealed_storage)
    populate(engine, count=40)
    for tenant in ("acme", "zeta"):
        assert engine.rebuild_stats(tenant, dry_run=True).clean
        assert_consistent(engine, tenant)
    engine.gc(tenant="acme", time_budget_ms=1000)
    assert engine.rebuild_stats().clean
    for tenant in ("acme", "zeta"):
        assert_consistent(engine, tenant)


def test_keys_that_only_open_read_sealed_records_while_encryption_is_turned_on(
        storage: Storage, sealing_key: bytes) -> None:
    """The first step of turning encryption on while workers run (ops/RUNBOOK.md): a
    process that only opens reads what a sealing one wrote, and writes in the clear."""
    engine_over(storage).store(token(), tenant="acme", memory_id="before")
    seal_storage(storage, sealing(sealing_key))
    engine_over(storage).store(token(), tenant="acme", memory_id="sealed")
    seal_storage(storage, EncryptionSettings(None, (sealing_key,)))
    engine = engine_over(storage)
    assert engine.retrieve("sealed", tenant="acme") is not None
    engine.store(token(), tenant="acme", memory_id="clear")
    keys = TenantKeys("acme")
    assert not envelope.is_sealed(stored(storage, keys.memory("clear")))
    seal_storage(storage, sealing(sealing_key))
    for memory_id in ("before", "sealed", "clear"):
        assert engine_over(storage).retrieve(memory_id, tenant="acme") is not None
    with pytest.raises(EncryptionKeyMissing, match="which this process does not have"):
        seal_storage(storage, EncryptionSettings(None, (new_key(),)))


def test_keys_that_only_open_are_refused_by_a_store_sealed_throughout(
        sealed_storage: Storage, sealing_key: bytes) -> None:
    engine_over(sealed_storage).store(token(), tenant="acme", memory_id="m1")
    with pytest.raises(EncryptionKeyMissing, match="would write records back in the clear"):
        seal_storage(sealed_storage, EncryptionSettings(None, (sealing_key,)))
    assert not read_markers(sealed_storage).plain


def test_a_rebuild_quarantines_a_damaged_sealed_record_and_keeps_it_sealed(
        sealed_storage: Storage, sealing_key: bytes) -> None:
    """A sealed value that fails its tag is the record's fault: `spiral repair` moves it
    aside, still sealed, and the tenant is consistent again."""
    engine = engine_over(sealed_storage)
    populate(engine, tenants=("acme",), count=12)
    key = TenantKeys("acme").memory("m3")
    raw = stored(sealed_storage, key)
    put_raw(sealed_storage, key, raw[:-1] + bytes([raw[-1] ^ 1]))
    report = engine.rebuild_stats("acme")
    assert [q.key for q in report.quarantined] == [key]
    assert "does not open under key id" in report.quarantined[0].reason
    assert_consistent(engine, "acme")
    moved = dict(sealed_storage.scan_stored(TenantKeys("acme").quarantined_memories))
    assert len(moved) == 1
    assert all(envelope.key_id_of(raw) == key_id_of(sealing_key) for raw in moved.values())


def test_a_record_under_a_key_this_process_lacks_is_never_quarantined(
        sealed_storage: Storage, sealing_key: bytes) -> None:
    """It may be a key this process should have been given (a rotation half done): the
    rebuild stops, naming the key id, and moves nothing."""
    engine = engine_over(sealed_storage)
    populate(engine, tenants=("acme",), count=12)
    stranger = new_key()
    key = TenantKeys("acme").memory("m3")
    foreign = codec_for(sealing(stranger))
    put_raw(sealed_storage, key, foreign.encode(key, sealed_storage.get(key)))
    with pytest.raises(SealBroken, match=f"key id {key_id_of(stranger)}, which this process"):
        engine.rebuild_stats("acme")
    assert list(sealed_storage.scan_stored(TenantKeys("acme").quarantine)) == []
    assert envelope.key_id_of(stored(sealed_storage, key)) == key_id_of(stranger)
