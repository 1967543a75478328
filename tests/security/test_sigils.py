"""Sigils: keyed, distinct, carrying their key's id, and one secret per store however
many processes start."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from spiral_tasks.keys import SIGIL_KEYRING_KEY, SIGIL_SECRET_KEY
from spiral_tasks.security.keyring import StoredKeys, key_source, write_stored
from spiral_tasks.security.sigils import (
    Keyring,
    SigilKey,
    index_name,
    key_id,
    well_formed,
)
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.redis import RedisStorage

KEY = SigilKey(b"secret")


def test_a_sigil_is_keyed_by_secret_tenant_id_and_creation() -> None:
    assert KEY.sign("t", "m", 1.0) == SigilKey(b"secret").sign("t", "m", 1.0)
    assert len({KEY.sign("t", "m", 1.0), KEY.sign("u", "m", 1.0), KEY.sign("t", "n", 1.0),
                KEY.sign("t", "m", 2.0), SigilKey(b"other").sign("t", "m", 1.0)}) == 5
    assert KEY.sign("t:a", "b", 1.0) != KEY.sign("t", "a:b", 1.0)  # no ambiguous joins
    assert KEY.sign("t", "m", 1) == KEY.sign("t", "m", 1.0)  # an int is that float


def test_a_sigil_is_forty_hex_characters_starting_with_its_key_id() -> None:
    sigil = KEY.sign("t", "m", 1.0)
    assert well_formed(sigil)
    assert key_id(sigil) == KEY.kid == KEY.fingerprint[:8]
    assert not well_formed(sigil[:-1])
    assert not well_formed(sigil.upper())
    assert not well_formed(sigil + "0")
    assert not well_formed(None)


def test_a_fingerprint_names_the_secret_without_showing_it() -> None:
    assert SigilKey(b"secret").fingerprint == KEY.fingerprint
    assert SigilKey(b"other").fingerprint != KEY.fingerprint
    assert "secret" not in KEY.fingerprint
    assert KEY.secret == b"secret"


def test_an_index_entry_is_named_by_a_hash_that_does_not_show_the_sigil() -> None:
    sigil = KEY.sign("t", "m", 1.0)
    assert index_name(sigil) == index_name(sigil)
    assert len(index_name(sigil)) == 32
    assert key_id(sigil) not in index_name(sigil)
    assert index_name(sigil) != index_name(KEY.sign("t", "m", 2.0))


def test_a_key_is_accepted_until_its_time() -> None:
    old = SigilKey(b"old", until=100.0)
    ring = Keyring(KEY, (old,))
    assert ring.verifier(old.kid, 99.9) == old
    assert ring.verifier(old.kid, 100.0) is None
    assert ring.verifier(KEY.kid, 1e12) == KEY
    assert ring.verifier("00000000", 0.0) is None
    assert ring.accepted_kids(99.0) == {KEY.kid, old.kid}
    assert ring.accepted_kids(101.0) == {KEY.kid}


def test_two_keys_with_one_id_are_refused() -> None:
    with pytest.raises(ValueError, match="share a key id"):
        Keyring(KEY, (SigilKey(b"secret", until=5.0),))


def test_a_memory_may_hold_an_entry_under_each_key_of_the_ring() -> None:
    old = SigilKey(b"old", until=100.0)
    ring = Keyring(KEY, (old,))
    current = KEY.sign("t", "m", 1.0)
    assert ring.sigils_of("t", "m", 1.0, current) == {current, old.sign("t", "m", 1.0)}
    assert ring.accepted_sigils_of("t", "m", 1.0, current, 200.0) == {current}


def test_a_generated_secret_is_kept_and_a_configured_one_wins(storage: Storage) -> None:
    generated = key_source(storage, None).current()
    assert isinstance(storage.get(SIGIL_SECRET_KEY), str)
    assert key_source(storage, None).current().sign("t", "m", 1.0) == \
        generated.sign("t", "m", 1.0)
    configured = key_source(storage, "configured")
    assert configured.configured
    assert configured.current().sign("t", "m", 1.0) != generated.sign("t", "m", 1.0)


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_stored_keyring_is_read_again_after_the_refresh_interval(storage: Storage) -> None:
    ticks = Ticks()
    source = StoredKeys(storage, refresh_s=5.0, monotonic=ticks)
    before = source.current()
    write_stored(storage, "rotated", [SigilKey(before.active.secret, until=1e12)])
    ticks.now = 4.9
    assert source.current() == before  # not yet due
    ticks.now = 5.0
    after = source.current()
    assert after.active == SigilKey(b"rotated")
    assert after.others == (SigilKey(before.active.secret, until=1e12),)
    assert isinstance(storage.get(SIGIL_KEYRING_KEY), dict)


def _load_at_once(url: str, barrier: Any, results: Any) -> None:
    storage = RedisStorage(url)
    storage.init()
    barrier.wait(timeout=60)
    results.put(key_source(storage, None).current().sign("t", "m", 1.0))
    storage.close()


def test_processes_starting_together_agree_on_one_secret(redis_url: str) -> None:
    """Many processes open an empty store at the same instant: whichever creates the
    secret first, all of them must sign with it."""
    context = multiprocessing.get_context("spawn")
    count = 5
    barrier, results = context.Barrier(count), context.Queue()
    processes = [context.Process(target=_load_at_once, args=(redis_url, barrier, results))
                 for _ in range(count)]
    for process in processes:
        process.start()
    signed = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert len(set(signed)) == 1
