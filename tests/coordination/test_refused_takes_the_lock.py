"""A refused optimistic commit that found the tenant moved (and its lock free) takes
the lock itself, in the same round trip, and reads what the locked section needs: the
store goes on under that lock with one more round trip (its commit), not two. The lock
is taken and fenced exactly as `acquire.lua` takes it: a holder stopped past its
lifetime gets `LockLost` and writes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis

from spiral_tasks.audit.verify import verify_locked
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import CorruptRecord
from spiral_tasks.keys import TenantKeys
from spiral_tasks.testing.waiting import wait_until
from tests.coordination.test_optimistic import (
    STAGED_THEN_STOPPED,
    _race,
    assert_the_stopped_child_wrote_nothing,
    open_engine,
    outcomes,
)
from tests.invariants import assert_consistent

KEYS = TenantKeys("default")


def scripts_run(client: redis.Redis) -> int:
    """How many scripts Redis ran since its statistics were last reset."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0)
               for name in ("evalsha", "eval"))


def test_a_refusal_for_a_moved_tenant_takes_the_lock_in_its_round_trip(
        redis_url: str) -> None:
    one, two = open_engine(redis_url), open_engine(redis_url)
    one.store("a")
    one.store("b")  # `one`'s cache is current
    two.store("c", memory_id="c")  # the tenant moves past it
    client = redis.Redis.from_url(redis_url)
    client.config_resetstat()
    stored = one.store("d", associations=["c"], memory_id="d")
    # The optimistic script (refused, lock taken, state read) and the commit: no
    # acquire script in between, and no other command.
    assert scripts_run(client) == 2
    assert outcomes(one) == {"committed": 1, "refused:moved": 1}
    assert stored.created
    assert not client.exists(KEYS.lock)  # the commit released the lock it took
    # The state the refusal read is the tenant's: `one`'s cache is current again (its
    # next store tries optimistically, the refusal's backoff aside).
    one.sections.reset_odds()
    one.store("e")
    assert outcomes(one)["committed"] == 2
    assert assert_consistent(one) == 5
    assert one.stats().total_memories == two.stats().total_memories == 5
    client.close()


def test_optimistic_writers_racing_on_one_tenant_keep_every_store_once(
        redis_url: str) -> None:
    """Four processes whose caches are current store at once, twenty times: one
    commits optimistically per round at most (its commit moves the generation); the
    others are refused, take the lock in the refusal or wait for it, and each store is
    created exactly once, the invariant and the audit chain holding."""
    engine = open_engine(redis_url)
    engine.store("warm-up")
    created, optimistic = _race(redis_url, 4, 20, "shallow", same_id=False)
    assert created == dict.fromkeys(range(20), 4)
    assert 1 <= optimistic <= 20
    assert assert_consistent(engine) == 81
    journal = engine.sections.journal
    assert journal is not None
    assert verify_locked(engine.sections, journal.signer, "default").ok
    assert engine.rebuild_stats().clean


REFUSED_THEN_STOPPED_IN_A_CHILD = """
import json, os, signal, sys
from spiral_tasks.combining import Pending
from spiral_tasks.errors import LockLost
from spiral_tasks.keys import tenant_keys
from spiral_tasks.section import StateUse
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.store import StoreBatch, StoreRequest, expected
from spiral_tasks.testing.engines import engine_over
storage = RedisStorage(sys.argv[1])
storage.init()
engine = engine_over(storage, sigil_secret="s")
engine.store("the child's first")  # its cache is current
print("cached", flush=True)
sys.stdin.readline()  # the parent moved the tenant meanwhile
pending = Pending(StoreRequest.validated("stale", "general", "shallow", None, "default", "x"))
keys = tenant_keys("default")
absent, present = expected(keys, [pending])
served, taken = engine._store_optimistically(keys, [pending], absent, present)
assert not served and taken is not None, (served, taken)
with engine.sections.enter("default", read=absent + present, state=StateUse.LOAD,
                           taken=taken) as section:
    batch = StoreBatch(engine.context, section)  # decides on the tenant the refusal read
""" + STAGED_THEN_STOPPED


def test_a_holder_of_a_lock_its_refusal_took_cannot_commit_once_stopped_past_it(
        redis_url: str) -> None:
    """A real process is refused (the tenant moved), its refusal takes the lock, it
    stages a store of id "x" and stops (SIGSTOP) past the lock's lifetime; another
    process stores "x" meanwhile. Resumed, the stopped holder gets `LockLost` and
    writes nothing: "x" is created once, the invariant and the audit chain hold."""
    engine: SpiralMemory = open_engine(redis_url)
    engine.store("warm-up")
    child = subprocess.Popen(
        [sys.executable, "-c", REFUSED_THEN_STOPPED_IN_A_CHILD, redis_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    client = redis.Redis.from_url(redis_url)
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "cached"
        engine.store("moves the tenant")
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "staged"
        holder = client.get(KEYS.lock)
        assert holder is not None
        assert holder.decode().startswith(f"{child.pid}:")  # the refusal took it
        wait_until(lambda: not client.exists(KEYS.lock), 30,
                   message="the stopped child's lock to expire")
        mine = engine.store("mine", memory_id="x")
        assert mine.created
    finally:
        os.kill(child.pid, signal.SIGCONT)
    assert_the_stopped_child_wrote_nothing(engine, child, 4)
    client.close()


def test_a_refusal_that_found_the_lock_held_takes_nothing(redis_url: str) -> None:
    """Only a free lock is taken: a refusal for a held lock leaves it to its holder
    (the store then waits for it the usual way)."""
    one = open_engine(redis_url)
    one.store("warm-up")
    client = redis.Redis.from_url(redis_url)
    client.set(KEYS.lock, "someone else", px=300)
    assert one.store("after the holder").created
    assert outcomes(one) == {"refused:locked": 1}
    assert assert_consistent(one) == 2
    client.close()


def test_writers_taking_turns_leave_no_lock_behind(
        redis_url: str) -> None:
    """Two engines alternating on one tenant: every store of each finds the tenant
    moved, so each is refused and goes on under the lock its refusal took; no lock is
    left behind and each cache ends current."""
    one, two = open_engine(redis_url), open_engine(redis_url)
    one.store("a")
    two.store("b")
    for i in range(10):
        one.store(f"one {i}")
        two.store(f"two {i}")
    client = redis.Redis.from_url(redis_url)
    assert not client.exists(KEYS.lock)
    seen = outcomes(one)
    assert seen.get("committed", 0) == 0
    assert seen["refused:moved"] >= 1
    assert assert_consistent(one) == 22
    client.close()



def test_a_stale_cache_reloads_only_the_spirals_whose_bytes_changed(
        redis_url: str) -> None:
    """Once this process has decoded a snapshot, a reload after another writer's store
    keeps each spiral whose stored bytes did not change as the object it had, and
    decodes anew only those that changed: a stale cache costs the spirals another
    writer (or this process) wrote since, not all of them."""
    one, two = open_engine(redis_url), open_engine(redis_url)
    spiral_of = {depth: one.store(f"into {depth}", depth=depth).stored.spiral_id
                 for depth in ("surface", "shallow", "deep", "core")}
    assert len(set(spiral_of.values())) == 4
    two.store("moves the tenant")
    one.store("first reload", depth="surface")  # every spiral decoded from a snapshot
    before = one.sections.cache.get("default")
    assert before is not None
    two.store("changes the core spiral", depth="core")
    one.store("second reload", depth="shallow")
    after = one.sections.cache.get("default")
    assert after is not None
    # Untouched since the first reload: the same object, not decoded again.
    assert after.spirals[spiral_of["deep"]] is before.spirals[spiral_of["deep"]]
    # Written by the other process: decoded anew, with its new node.
    core = after.spirals[spiral_of["core"]]
    assert core is not before.spirals[spiral_of["core"]]
    assert core.node_count == before.spirals[spiral_of["core"]].node_count + 1
    assert assert_consistent(one) == 8


def test_a_spiral_record_corrupted_behind_the_cache_is_still_refused(
        redis_url: str) -> None:
    """Reuse is by the exact stored bytes: a spiral record overwritten with other
    bytes is decoded and checked again, and a corrupt one refuses the store."""
    one, two = open_engine(redis_url), open_engine(redis_url)
    one.store("a")
    one.store("b")
    state = one.sections.cache.get("default")
    assert state is not None
    (spiral_id,) = state.spirals
    two.store("moves the tenant")
    client = redis.Redis.from_url(redis_url)
    client.set(KEYS.spiral(spiral_id), b'{"id": "not a spiral"}')
    with pytest.raises(CorruptRecord):
        one.store("c")
    assert not client.exists(KEYS.lock)  # the refusal's lock was released
    client.close()
