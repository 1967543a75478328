"""Attacks on sigils as capabilities, on every backend (in memory, LevelDB, a real
redis-server): a sigil opens its own memory in its own tenant while it lives, and
every other sigil gets None, after the same reads and the same MAC work."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from spiral_tasks.config import OldSecret
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.keys import TenantKeys
from spiral_tasks.security import capability
from spiral_tasks.security.sigils import index_name, key_id
from spiral_tasks.storage.base import Put, Storage
from spiral_tasks.testing.engines import engine_over
from tests.conftest import Clock, EngineFactory
from tests.invariants import assert_consistent

KEYS = TenantKeys("default")


def sigil_of(engine: SpiralMemory, content: str, tenant: str = "default", **kw: Any) -> str:
    return engine.store(content, tenant=tenant, **kw).stored.sigil


def test_a_sigil_opens_its_memory_and_changes_nothing(engine: SpiralMemory) -> None:
    result = engine.store("the capability's memory", depth="deep", memory_id="m1")
    before = engine.storage.get(KEYS.memory("m1"))
    queued = engine.storage.index_range(KEYS.gc_queue)
    memory = engine.retrieve_by_sigil(result.stored.sigil)
    assert memory is not None
    assert memory.to_json() == before
    assert engine.storage.get(KEYS.memory("m1")) == before  # no access recorded
    assert engine.storage.index_range(KEYS.gc_queue) == queued  # nor a later GC


def forgeries(sigil: str) -> dict[str, str]:
    """Sigils an attacker might try, from one they hold (or none)."""
    return {
        "random, the right key id": key_id(sigil) + secrets.token_hex(16),
        "random, another key id": secrets.token_hex(20),
        "one character changed": sigil[:-1] + ("0" if sigil[-1] != "0" else "1"),
        "truncated by one": sigil[:-1],
        "key id only": sigil[:8],
        "mac only": sigil[8:],
        "empty": "",
        "extended": sigil + "0",
        "upper case": sigil.upper(),
        "padded": f" {sigil} ",
        "not hex": "z" * 40,
        "a megabyte": "a" * (1024 * 1024),
        "the index entry's name": index_name(sigil),
        "a lone surrogate": "\udc80" * 40,
        "NUL": "\x00" * 40,
    }


def test_forged_truncated_and_mangled_sigils_get_none(engine: SpiralMemory) -> None:
    sigil = sigil_of(engine, "guarded", memory_id="m1")
    for name, forged in forgeries(sigil).items():
        assert engine.retrieve_by_sigil(forged) is None, name
    assert engine.retrieve_by_sigil(sigil) is not None


def test_a_sigil_that_is_not_a_string_is_a_bad_argument_not_a_refusal(
        engine: SpiralMemory) -> None:
    for value in (None, 7, ["x"], {"sigil": "x"}, b"0" * 40):
        with pytest.raises(InvalidArgument) as caught:
            engine.retrieve_by_sigil(value)  # type: ignore[arg-type]
        assert caught.value.argument == "sigil"
        assert "must be a string" in caught.value.problem
    with pytest.raises(InvalidArgument, match="tenant"):
        engine.retrieve_by_sigil("0" * 40, tenant="a:b")


def test_another_tenants_sigil_gets_none_even_for_the_same_id(engine: SpiralMemory) -> None:
    mine = sigil_of(engine, "acme's", tenant="acme", memory_id="shared-id")
    theirs = sigil_of(engine, "zeta's", tenant="zeta", memory_id="shared-id")
    assert engine.retrieve_by_sigil(mine, tenant="zeta") is None
    assert engine.retrieve_by_sigil(theirs, tenant="acme") is None
    assert engine.retrieve_by_sigil(mine, tenant="nobody") is None
    opened = engine.retrieve_by_sigil(mine, tenant="acme")
    assert opened is not None
    assert opened.content == "acme's"
    # Copying acme's index entry into zeta (someone who can write storage) opens
    # nothing either: the MAC signs the tenant.
    engine.storage.apply([Put(TenantKeys("zeta").sigil(index_name(mine)), "shared-id")])
    assert engine.retrieve_by_sigil(mine, tenant="zeta") is None


def test_a_collected_memorys_sigil_stops_at_once(engine: SpiralMemory) -> None:
    sigil = sigil_of(engine, "soon gone", memory_id="m1")
    keep = sigil_of(engine, "stays", memory_id="m2")
    assert engine.collect("m1")
    assert engine.retrieve_by_sigil(sigil) is None
    assert engine.storage.get(KEYS.sigil(index_name(sigil))) is None
    assert engine.retrieve_by_sigil(keep) is not None
    assert assert_consistent(engine) == 1


def test_gc_and_eviction_stop_sigils_at_once(make_engine: EngineFactory,
                                             clock: Clock) -> None:
    engine = make_engine(max_memory_nodes=3, retention_s=60)
    due = [sigil_of(engine, f"due {i}", depth="surface") for i in range(2)]
    clock.advance(3600)
    # A budget no loaded machine runs out of: both due memories go in this one run.
    report = engine.gc(tenant="default", time_budget_ms=60_000)
    assert len(report.collected_ids) == 2
    assert [engine.retrieve_by_sigil(s) for s in due] == [None, None]
    full = [sigil_of(engine, f"fills {i}", depth="surface") for i in range(3)]
    evicts = sigil_of(engine, "evicts the weakest", depth="core")
    alive = [s for s in full if engine.retrieve_by_sigil(s) is not None]
    assert len(alive) == 2  # one was evicted to make room, and its sigil stopped
    assert engine.retrieve_by_sigil(evicts) is not None
    assert assert_consistent(engine) == 3
    assert len(engine.storage.keys(KEYS.sigils)) == 3


def test_an_id_stored_again_does_not_revive_the_old_sigil(make_engine: EngineFactory,
                                                          clock: Clock) -> None:
    engine = make_engine(tombstone_ttl_s=3600)
    old = sigil_of(engine, "first life", memory_id="reused")
    assert engine.collect("reused")
    clock.advance(3601)
    engine.gc(tenant="default", time_budget_ms=60_000)  # forgets the expired tombstone
    new = sigil_of(engine, "second life", memory_id="reused")
    assert new != old
    assert engine.retrieve_by_sigil(old) is None
    opened = engine.retrieve_by_sigil(new)
    assert opened is not None
    assert opened.content == "second life"


def test_a_stale_or_planted_index_entry_opens_nothing(engine: SpiralMemory) -> None:
    first = sigil_of(engine, "one", memory_id="m1")
    sigil_of(engine, "two", memory_id="m2")
    engine.storage.apply([Put(KEYS.sigil(index_name(first)), "m2"),   # points elsewhere
                          Put(KEYS.sigil(index_name("f" * 40)), "m1"),  # made up
                          Put(KEYS.sigil(index_name("e" * 40)), "gone")])  # no record
    for sigil in (first, "f" * 40, "e" * 40):
        assert engine.retrieve_by_sigil(sigil) is None


class Reads:
    """What one lookup read from storage and how many MACs it compared."""

    def __init__(self, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: list[str] = []
        self.compared = 0
        real_get, real_compare = storage.get, capability.hmac.compare_digest

        def get(key: str) -> Any:
            self.keys.append(key)
            return real_get(key)

        def compare(a: Any, b: Any) -> bool:
            self.compared += 1
            return real_compare(a, b)

        monkeypatch.setattr(storage, "get", get)
        monkeypatch.setattr(capability.hmac, "compare_digest", compare)

    def shape(self) -> tuple[list[str], int]:
        """The kinds of keys read (the sigil index, memory records), and MACs compared."""
        kinds = ["sigil" if ":sigil:" in k else "memory" for k in self.keys]
        found = (kinds, self.compared)
        self.keys, self.compared = [], 0
        return found


def test_every_refusal_does_the_same_work_as_an_acceptance(
        storage: Storage, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The constant-time property, checked by its structure (timings are measured by
    benchmarks/sigil_timing.py): every lookup reads one index entry and one record and
    compares one MAC, whichever check fails."""
    retired = engine_over(storage, clock=clock, sigil_secret="retired").store(
        "under a retired key", memory_id="r").stored.sigil
    engine = engine_over(storage, clock=clock,
                         old_sigil_secrets=[OldSecret("retired", clock.now - 1)])
    valid = sigil_of(engine, "valid", memory_id="v")
    collected = sigil_of(engine, "collected", memory_id="c")
    engine.collect("c")
    other = sigil_of(engine, "other tenant", tenant="zeta")
    engine.storage.apply([Put(KEYS.sigil(index_name("e" * 40)), "not an id!")])
    reads = Reads(engine.storage, monkeypatch)
    cases = {"valid": valid, "collected": collected, "other tenant": other,
             "retired key": retired, "tampered entry": "e" * 40, **forgeries(valid)}
    for name, sigil in cases.items():
        opened = engine.retrieve_by_sigil(sigil)
        assert (opened is not None) == (name == "valid"), name
        assert reads.shape() == (["sigil", "memory"], 1), name
