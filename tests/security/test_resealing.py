"""Key rotation in one process, on every backend: from one key to another, from none to
a key, a dry run, a record that does not open, and records written meanwhile under the
old key. (Rotation under live workers, and killed mid-run, is in tests/cli.)"""

from __future__ import annotations

import pytest

from spiral_tasks.config import EncryptionSettings
from spiral_tasks.errors import EncryptionKeyMissing, SealBroken
from spiral_tasks.keys import SEALING_PLAIN_KEY, TenantKeys, sealing_marker
from spiral_tasks.security import envelope
from spiral_tasks.security.atrest import codec_for, read_markers, seal_storage
from spiral_tasks.security.resealing import NoSealingKey, TenantRotation, rotate
from spiral_tasks.storage.base import EncodedPut, Storage
from spiral_tasks.testing.encryption import key_id_of, new_key, sealing
from spiral_tasks.testing.engines import engine_over
from tests.contents import contents, populate
from tests.invariants import assert_consistent

TENANTS = ("acme", "zeta")


def key_ids(storage: Storage) -> dict[str | None, int]:
    """How many memory records are under each key id (None: in the clear)."""
    found: dict[str | None, int] = {}
    for tenant in TENANTS:
        for _, raw in storage.scan_stored(TenantKeys(tenant).memories):
            key_id = envelope.key_id_of(raw)
            found[key_id] = found.get(key_id, 0) + 1
    return found


def test_rotation_reseals_everything_under_the_new_key(sealed_storage: Storage,
                                                       sealing_key: bytes) -> None:
    populate(engine_over(sealed_storage))
    before = contents(sealed_storage)
    old, new = key_id_of(sealing_key), new_key()
    seal_storage(sealed_storage, sealing(new, sealing_key))
    engine = engine_over(sealed_storage)
    records = sum(key_ids(sealed_storage).values())
    report = rotate(engine)
    assert report.complete
    assert report.resealed == records
    assert report.current == 0
    assert {t.tenant: t.sources for t in report.tenants} == {
        t: {old: len(sealed_storage.keys(TenantKeys(t).memories))} for t in TENANTS}
    assert key_ids(sealed_storage) == {key_id_of(new): records}
    assert report.markers_removed == [sealing_marker(old)]
    assert read_markers(sealed_storage).key_ids == {key_id_of(new)}
    # Only the new key is needed now, and the old one alone is refused.
    with pytest.raises(EncryptionKeyMissing, match=key_id_of(new)):
        seal_storage(sealed_storage, sealing(sealing_key))
    seal_storage(sealed_storage, sealing(new))
    assert contents(sealed_storage) == before
    for tenant in TENANTS:
        assert_consistent(engine_over(sealed_storage), tenant)
    again = rotate(engine_over(sealed_storage))
    assert again.complete
    assert again.resealed == 0
    assert again.current == records


def test_rotation_from_no_key_seals_the_records_left_in_the_clear(
        storage: Storage, sealing_key: bytes) -> None:
    populate(engine_over(storage))
    before = contents(storage)
    records = sum(key_ids(storage).values())
    assert key_ids(storage) == {None: records}
    seal_storage(storage, sealing(sealing_key))
    report = rotate(engine_over(storage))
    assert report.complete
    assert report.resealed == records
    assert sum(t.unsealed for t in report.tenants) == records
    assert report.markers_removed == [SEALING_PLAIN_KEY]
    assert key_ids(storage) == {key_id_of(sealing_key): records}
    assert contents(storage) == before
    # The store no longer admits records in the clear, nor a process without the key.
    assert not read_markers(storage).plain
    seal_storage(storage, sealing(sealing_key))
    assert not storage.codec.accept_plain  # type: ignore[attr-defined]
    with pytest.raises(EncryptionKeyMissing, match="no encryption key"):
        seal_storage(storage, EncryptionSettings())


def test_a_dry_run_opens_and_counts_and_writes_nothing(sealed_storage: Storage,
                                                       sealing_key: bytes) -> None:
    populate(engine_over(sealed_storage))
    seal_storage(sealed_storage, sealing(new_key(), sealing_key))
    stored = dict(sealed_storage.scan_stored(""))
    report = rotate(engine_over(sealed_storage), dry_run=True)
    assert not report.complete
    assert report.left == report.resealed > 0
    assert dict(sealed_storage.scan_stored("")) == stored
    assert key_id_of(sealing_key) in read_markers(sealed_storage).key_ids


def test_a_record_that_does_not_open_stops_the_rotation_and_a_rerun_resumes(
        sealed_storage: Storage, sealing_key: bytes) -> None:
    populate(engine_over(sealed_storage))
    stranger = new_key()
    # One record of the second tenant sealed under a key the rotation is not given.
    victim = TenantKeys("zeta").memory("m0")
    foreign = codec_for(sealing(stranger))
    sealed_storage._apply([EncodedPut(victim, foreign.encode(victim,
                                                             sealed_storage.get(victim)))])
    new = new_key()
    seal_storage(sealed_storage, sealing(new, sealing_key))
    done: list[TenantRotation] = []
    with pytest.raises(SealBroken, match=f"{victim}.*key id {key_id_of(stranger)}"):
        rotate(engine_over(sealed_storage), on_tenant=done.append)
    assert [t.tenant for t in done] == ["acme"]
    counts = key_ids(sealed_storage)
    assert counts[key_id_of(new)] == done[0].resealed  # the first tenant is done
    assert key_id_of(sealing_key) in read_markers(sealed_storage).key_ids
    seal_storage(sealed_storage, sealing(new, sealing_key, stranger))
    report = rotate(engine_over(sealed_storage))
    assert report.complete
    assert next(t.current for t in report.tenants) == done[0].resealed
    assert set(key_ids(sealed_storage)) == {key_id_of(new)}


def test_records_sealed_meanwhile_under_the_old_key_keep_its_marker(
        sealed_storage: Storage, sealing_key: bytes) -> None:
    populate(engine_over(sealed_storage))
    new = new_key()
    seal_storage(sealed_storage, sealing(new, sealing_key))
    old_codec = codec_for(sealing(sealing_key))
    late = TenantKeys("acme").memory("m0")

    def old_worker_writes(done: TenantRotation) -> None:
        # A worker still sealing with the old key writes into a tenant already done.
        if done.tenant == "acme":
            value = sealed_storage.get(late)
            sealed_storage._apply([EncodedPut(late, old_codec.encode(late, value))])

    report = rotate(engine_over(sealed_storage), on_tenant=old_worker_writes)
    assert not report.complete
    assert report.left == 1
    assert report.markers_removed == []
    assert key_id_of(sealing_key) in read_markers(sealed_storage).key_ids
    assert rotate(engine_over(sealed_storage)).complete  # once that worker has the new key


def test_rotation_needs_a_key_to_seal_with(storage: Storage) -> None:
    populate(engine_over(storage), count=3)
    with pytest.raises(NoSealingKey, match="SPIRAL_ENCRYPTION_KEY"):
        rotate(engine_over(storage))
    seal_storage(storage, EncryptionSettings(None, (new_key(),)))
    with pytest.raises(NoSealingKey, match="SPIRAL_ENCRYPTION_KEY"):
        rotate(engine_over(storage))


def test_encryption_turned_on_step_by_step_ends_with_every_record_sealed(
        storage: Storage, sealing_key: bytes) -> None:
    """ops/RUNBOOK.md's "Turn encryption on": keys that only open, then the sealing key,
    then a rotation, with stores at every step."""
    engine_over(storage).store("before", tenant="acme", memory_id="m0")
    seal_storage(storage, EncryptionSettings(None, (sealing_key,)))
    engine_over(storage).store("opening only", tenant="acme", memory_id="m1")
    seal_storage(storage, sealing(sealing_key))
    engine_over(storage).store("sealing", tenant="acme", memory_id="m2")
    assert key_ids(storage) == {None: 2, key_id_of(sealing_key): 1}
    report = rotate(engine_over(storage))
    assert report.complete
    assert report.markers_removed == [SEALING_PLAIN_KEY]
    assert key_ids(storage) == {key_id_of(sealing_key): 3}
    seal_storage(storage, sealing(sealing_key))
    engine = engine_over(storage)
    assert [engine.retrieve(f"m{n}", tenant="acme").content  # type: ignore[union-attr]
            for n in range(3)] == ["before", "opening only", "sealing"]
    with pytest.raises(EncryptionKeyMissing, match="only open"):  # sealed throughout now
        seal_storage(storage, EncryptionSettings(None, (sealing_key,)))


def test_rotation_reseals_quarantined_records_too(sealed_storage: Storage,
                                                  sealing_key: bytes) -> None:
    engine = engine_over(sealed_storage)
    populate(engine, tenants=("acme",), count=12)
    key = TenantKeys("acme").memory("m3")
    raw = dict(sealed_storage.scan_stored(key))[key]
    sealed_storage._apply([EncodedPut(key, raw[:-1] + bytes([raw[-1] ^ 1]))])
    assert len(engine.rebuild_stats("acme").quarantined) == 1
    new = new_key()
    seal_storage(sealed_storage, sealing(new, sealing_key))
    assert rotate(engine_over(sealed_storage)).complete
    quarantined = TenantKeys("acme").quarantined_memories
    raws = [raw for _, raw in sealed_storage.scan_stored(quarantined)]
    assert [envelope.key_id_of(raw) for raw in raws] == [key_id_of(new)]
    seal_storage(sealed_storage, sealing(new))
    moved = [value for _, value in sealed_storage.scan(quarantined)]
    assert moved[0]["key"] == key
