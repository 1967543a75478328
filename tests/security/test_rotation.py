"""Rotating the sigil key on every backend: old sigils keep working through their
grace period and stop at its end, re-signing gives every memory a sigil under the new
key, and collection, rebuild and a second process all follow."""

from __future__ import annotations

from typing import Any

from spiral_tasks.config import OldSecret
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.keys import SIGIL_SECRET_KEY, TenantKeys
from spiral_tasks.model import Memory
from spiral_tasks.security.keyring import read_stored, write_stored
from spiral_tasks.security.rotation import rotate_stored
from spiral_tasks.security.sigils import SigilKey, index_name, key_id
from spiral_tasks.storage.base import Delete, Put, Storage
from spiral_tasks.testing.engines import engine_over
from tests.conftest import Clock
from tests.invariants import assert_consistent

KEYS = TenantKeys("default")
GRACE_S = 1000.0


def configured(storage: Storage, clock: Clock, secret: str,
               *old: OldSecret) -> SpiralMemory:
    return engine_over(storage, clock=clock, sigil_secret=secret, old_sigil_secrets=old)


def opens(engine: SpiralMemory, sigil: str) -> str | None:
    memory = engine.retrieve_by_sigil(sigil)
    return None if memory is None else memory.id


def sigil_entries(engine: SpiralMemory) -> int:
    return len(engine.storage.keys(KEYS.sigils))


def test_old_sigils_work_through_the_grace_period_and_stop_after(storage: Storage,
                                                                 clock: Clock) -> None:
    before = configured(storage, clock, "one")
    old = before.store("stored before the rotation", memory_id="m1").stored.sigil
    after = configured(storage, clock, "two", OldSecret("one", clock.now + GRACE_S))
    assert opens(after, old) == "m1"
    fresh = after.store("stored after", memory_id="m2").stored.sigil
    assert key_id(fresh) == SigilKey(b"two").kid != key_id(old)

    report = after.resign_sigils()
    assert (report.memories, report.resigned, report.dropped) == (2, 1, 0)
    assert after.resign_sigils().resigned == 0  # nothing left to do: run it again freely
    new = Memory.from_json(storage.get(KEYS.memory("m1"))).sigil
    assert key_id(new) == SigilKey(b"two").kid
    assert opens(after, old) == opens(after, new) == "m1"
    # A holder of the old sigil reads the new one in what it opens.
    opened = after.retrieve_by_sigil(old)
    assert opened is not None
    assert opened.sigil == new
    assert after.rebuild_stats().clean  # the old entry is kept while its key is accepted
    assert sigil_entries(after) == 3

    clock.advance(GRACE_S)
    assert opens(after, old) is None
    assert (opens(after, new), opens(after, fresh)) == ("m1", "m2")
    report_after = after.rebuild_stats()
    assert report_after.orphans.sigils == [index_name(old)]  # its key retired: dropped
    assert after.rebuild_stats().clean
    assert sigil_entries(after) == 2
    assert assert_consistent(after) == 2


def test_collecting_a_resigned_memory_stops_both_of_its_sigils(storage: Storage,
                                                               clock: Clock) -> None:
    configured(storage, clock, "one").store("x", memory_id="m1")
    old = Memory.from_json(storage.get(KEYS.memory("m1"))).sigil
    after = configured(storage, clock, "two", OldSecret("one", clock.now + GRACE_S))
    after.resign_sigils()
    new = Memory.from_json(storage.get(KEYS.memory("m1"))).sigil
    assert after.collect("m1")
    assert opens(after, old) is None
    assert opens(after, new) is None
    assert sigil_entries(after) == 0
    assert after.rebuild_stats().clean


def test_without_a_grace_period_old_sigils_stop_at_once(storage: Storage,
                                                        clock: Clock) -> None:
    old = configured(storage, clock, "one").store("x", memory_id="m1").stored.sigil
    after = configured(storage, clock, "two")  # the old secret leaked: not kept
    assert opens(after, old) is None
    report = after.resign_sigils()
    assert (report.resigned, report.dropped) == (1, 1)
    assert sigil_entries(after) == 1
    new = Memory.from_json(storage.get(KEYS.memory("m1"))).sigil
    assert opens(after, new) == "m1"


def test_a_stored_key_is_rotated_in_two_steps_and_taken_up_by_running_engines(
        storage: Storage, clock: Clock) -> None:
    worker = engine_over(storage, clock=clock, sigil_secret="", sigil_refresh_s=0.0)
    old = worker.store("before", memory_id="m1").stored.sigil
    first_secret = storage.get(SIGIL_SECRET_KEY)
    steps: list[tuple[str, Any]] = []

    def settle(why: str) -> None:
        # Between the steps, a running engine accepts both keys: announced first.
        steps.append((why, worker.context.sigils.current().accepted_kids(clock.now)))

    rotation = rotate_stored(storage, grace_s=GRACE_S, now=clock, settle=settle)
    assert not rotation.resumed
    assert rotation.previous_key_id == key_id(old) != rotation.key_id
    assert rotation.previous_until == clock.now + GRACE_S
    assert [why for why, _ in steps] == ["every process accepts the new key",
                                         "no process signs with the old key"]
    assert all(kids == {rotation.key_id, rotation.previous_key_id} for _, kids in steps)
    assert storage.get(SIGIL_SECRET_KEY) != first_secret
    # The running engine signs with the new key, and still opens the old sigils.
    assert key_id(worker.store("after", memory_id="m2").stored.sigil) == rotation.key_id
    assert opens(worker, old) == "m1"
    assert worker.resign_sigils().resigned == 1
    clock.advance(GRACE_S)
    assert opens(worker, old) is None
    assert opens(worker, Memory.from_json(storage.get(KEYS.memory("m1"))).sigil) == "m1"


def test_a_rotation_interrupted_after_announcing_takes_up_the_announced_key(
        storage: Storage, clock: Clock) -> None:
    secret, _ = read_stored(storage)
    announced = SigilKey(b"announced by a run that crashed")
    write_stored(storage, secret, [announced])
    rotation = rotate_stored(storage, grace_s=0.0, now=clock, settle=lambda _: None)
    assert rotation.resumed
    assert rotation.key_id == announced.kid
    assert rotation.previous_until is None
    secret, others = read_stored(storage)
    assert (secret, others) == ("announced by a run that crashed", [])


def test_sigils_of_the_layout_before_key_ids_are_refused_until_resigned(
        storage: Storage, clock: Clock) -> None:
    """A store written by the previous version: 32-hex sigils (HMAC of tenant and id,
    no key id), indexed under the sigil itself. They were never accepted by anything;
    the startup rebuild moves their entries to the hashed names, and re-signing gives
    them sigils that work."""
    engine = configured(storage, clock, "one")
    engine.store("from the previous version", memory_id="m1")
    record: dict[str, Any] = storage.get(KEYS.memory("m1"))
    legacy = "ab" * 16
    storage.apply([Delete(KEYS.sigil(index_name(record["sigil"]))),
                   Put(KEYS.memory("m1"), {**record, "sigil": legacy}),
                   Put(KEYS.sigil(legacy), "m1")])
    assert opens(engine, legacy) is None
    report = engine.rebuild_stats()
    assert (report.orphans.sigils, report.sigil_fixes) == ([legacy], 1)
    resigned = engine.resign_sigils()
    assert (resigned.resigned, resigned.dropped) == (1, 1)
    new = Memory.from_json(storage.get(KEYS.memory("m1"))).sigil
    assert opens(engine, new) == "m1"
    assert sigil_entries(engine) == 1
    assert engine.rebuild_stats().clean
