"""Sigils: keyed, distinct, and one secret per store however many processes start."""

from __future__ import annotations

import multiprocessing
from typing import Any

from spiral_tasks.keys import SIGIL_SECRET_KEY
from spiral_tasks.sigils import Sigils
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.redis import RedisStorage


def test_a_sigil_is_keyed_by_secret_tenant_and_id() -> None:
    sigils = Sigils(b"secret")
    assert sigils.sign("t", "m") == Sigils(b"secret").sign("t", "m")
    assert len({sigils.sign("t", "m"), sigils.sign("u", "m"), sigils.sign("t", "n"),
                Sigils(b"other").sign("t", "m")}) == 4
    assert sigils.sign("t:a", "b") != sigils.sign("t", "a:b")  # no ambiguous joins


def test_a_fingerprint_names_the_secret_without_showing_it() -> None:
    assert Sigils(b"secret").fingerprint == Sigils(b"secret").fingerprint
    assert Sigils(b"secret").fingerprint != Sigils(b"other").fingerprint
    assert "secret" not in Sigils(b"secret").fingerprint
    assert Sigils(b"secret").secret == "secret"


def test_a_generated_secret_is_kept_and_a_configured_one_wins(storage: Storage) -> None:
    generated = Sigils.load(storage, None)
    assert isinstance(storage.get(SIGIL_SECRET_KEY), str)
    assert Sigils.load(storage, None).sign("t", "m") == generated.sign("t", "m")
    assert Sigils.load(storage, "configured").sign("t", "m") != generated.sign("t", "m")


def _load_at_once(url: str, barrier: Any, results: Any) -> None:
    storage = RedisStorage(url)
    storage.init()
    barrier.wait(timeout=60)
    results.put(Sigils.load(storage, None).sign("t", "m"))
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
