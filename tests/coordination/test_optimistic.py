"""Optimistic commits (Redis): a store whose process's cache is current commits in one
round trip without the lock, and anything that could make its decisions wrong (another
writer's commit, a lock held, an id that exists, a link that does not) refuses it, so
the store goes the locked way instead, with nothing written twice."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
import redis

from spiral_tasks.audit.verify import verify_locked
from spiral_tasks.cache import TenantCache, TenantState
from spiral_tasks.config import Settings
from spiral_tasks.coordination.redis import RedisCoordinator
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import CapacityExceeded, LockLost, StaleGeneration
from spiral_tasks.keys import TenantKeys
from spiral_tasks.section import StateUse
from spiral_tasks.storage.base import Delete, Put, Storage
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.testing.engines import engine_over
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until
from tests.invariants import assert_consistent

KEYS = TenantKeys("default")


def open_engine(url: str, **settings: float | bool) -> SpiralMemory:
    """An engine with its own connection, as another process would have."""
    storage = RedisStorage(url)
    storage.init()
    return engine_over(storage, sigil_secret="s", **settings)


def outcomes(engine: SpiralMemory) -> dict[str, int]:
    return dict(engine.sections.optimistic_outcomes)


def test_a_store_with_a_current_cache_commits_without_the_lock(redis_url: str) -> None:
    engine = open_engine(redis_url)
    first = engine.store("first")  # no cache yet: the locked way
    assert outcomes(engine) == {}
    stored = [engine.store(f"m{i}", associations=[first.stored.id], memory_id=f"id{i}")
              for i in range(5)]
    assert outcomes(engine) == {"committed": 5}
    assert all(s.created for s in stored)
    assert assert_consistent(engine) == 6
    other = open_engine(redis_url)
    assert [m.id for m in other.stats().spirals] == [m.id for m in engine.stats().spirals]
    assert engine.retrieve("id3") is not None


def test_a_store_after_another_writers_commit_is_refused_and_takes_the_lock(
        redis_url: str) -> None:
    one, two = open_engine(redis_url), open_engine(redis_url)
    one.store("a")
    one.store("b")
    two.store("c")  # moves the tenant past `one`'s cache
    one.store("d")
    assert outcomes(one) == {"committed": 1, "refused:moved": 1}
    assert assert_consistent(one) == 4
    assert one.stats().total_memories == two.stats().total_memories == 4


def test_a_resent_id_is_refused_and_answered_from_storage(redis_url: str) -> None:
    engine = open_engine(redis_url)
    engine.store("warm-up")
    created = engine.store("original", memory_id="same")
    again = engine.store("resent", memory_id="same")
    assert created.created
    assert not again.created
    assert again.stored is not None
    assert again.stored.content == "original"
    assert outcomes(engine) == {"committed": 1, "refused:assumed": 1}
    assert assert_consistent(engine) == 2


def test_a_link_to_a_memory_gone_behind_the_cache_is_refused(redis_url: str) -> None:
    """The generation covers every commit; the check of linked records also covers a
    record removed outside any commit."""
    engine = open_engine(redis_url)
    linked = engine.store("linked").stored.id
    engine.store("warm-up")
    engine.storage.apply([Delete(KEYS.memory(linked))])
    with pytest.raises(Exception, match="no memory"):
        engine.store("dangling", associations=[linked])
    assert outcomes(engine)["refused:assumed"] == 1


def test_no_optimistic_commit_lands_inside_a_held_section(redis_url: str) -> None:
    engine = open_engine(redis_url)
    engine.store("warm-up")
    holder = RedisCoordinator(engine.storage, ttl_s=30)  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=1) as pool:
        with holder.critical("default") as fence:
            before = fence.generation
            store = pool.submit(engine.store, "waits")
            wait_until(lambda: outcomes(engine).get("refused:locked") == 1, 30,
                       message="the optimistic commit refused")
            # The holder still commits: nothing moved under it.
            fence.commit([Put("t:{default}:x", "held")], final=True)
            assert before != fence.generation
        assert store.result(30).created
    assert assert_consistent(engine) == 2


def test_a_holder_whose_lock_expired_cannot_write_after_an_optimistic_commit(
        redis_url: str) -> None:
    engine = open_engine(redis_url)
    engine.store("warm-up")
    slow = RedisCoordinator(engine.storage, ttl_s=0.2)  # type: ignore[arg-type]
    with slow.critical("default") as stale:
        wait_until(lambda: not engine.storage.client.exists(KEYS.lock), 10,  # type: ignore[attr-defined]
                   message="the lock to expire")
        engine.store("while the holder was stopped")
        assert outcomes(engine) == {"committed": 1}
        with pytest.raises((LockLost, StaleGeneration)):
            stale.commit([Put("t:{default}:x", "stale")])
    assert engine.storage.get("t:{default}:x") is None
    assert assert_consistent(engine) == 2


def test_a_store_that_must_make_room_takes_the_lock(redis_url: str) -> None:
    engine = open_engine(redis_url, max_memory_nodes=3)
    for i in range(3):
        engine.store(f"m{i}", depth="surface")
    engine.store("evicts", depth="surface")
    assert outcomes(engine)["needs room"] == 1
    assert assert_consistent(engine) == 3


def test_a_full_tenant_written_alone_keeps_its_odds(redis_url: str) -> None:
    """Making room needs the lock whoever else writes: a writer alone on a tenant at
    its limit goes straight to the lock, and commits optimistically again as soon as
    there is room, its odds untouched by the stores that evicted."""
    engine = open_engine(redis_url, max_memory_nodes=3)
    stored = [engine.store(f"m{i}", depth="surface") for i in range(8)]
    seen = outcomes(engine)
    assert seen["needs room"] == 5
    assert "skipped" not in seen
    assert "needs the lock" not in seen
    assert engine.collect(stored[-1].id)  # room for one
    engine.store("fits", depth="surface")
    assert outcomes(engine)["committed"] == seen["committed"] + 1
    assert assert_consistent(engine) == 3


def test_after_refusals_a_contended_tenant_tries_less_often(redis_url: str) -> None:
    one, two = open_engine(redis_url), open_engine(redis_url)
    one.store("warm-up")
    for i in range(12):  # every store of `one` follows one of `two`: always moved
        two.store(f"two {i}")
        one.store(f"one {i}")
    seen = outcomes(one)
    assert seen.get("committed", 0) == 0
    assert seen["skipped"] > seen["refused:moved"]
    assert assert_consistent(one) == 25


def test_a_tenant_written_alone_again_is_tried_again(redis_url: str) -> None:
    """Locked stores that find the cache current and the lock free raise the odds
    back: a writer left alone on a tenant commits optimistically again."""
    one, two = open_engine(redis_url), open_engine(redis_url)
    one.store("warm-up")
    for i in range(4):
        two.store(f"two {i}")
        one.store(f"one {i}")
    assert outcomes(one).get("committed", 0) == 0
    for i in range(8):
        one.store(f"alone {i}")
    assert outcomes(one)["committed"] == 4  # after four locked stores found it current
    assert assert_consistent(one) == 17


def test_concurrent_writers_keep_the_invariant_and_the_audit_chain(redis_url: str) -> None:
    engines = [open_engine(redis_url) for _ in range(3)]
    for turn in (0, 0, 1, 1, 0, 2, 2):  # optimistic and locked commits chain alike
        engines[turn].store(f"turn {turn}")
    assert sum(outcomes(e).get("committed", 0) for e in engines) == 3

    def store(i: int) -> None:
        engines[i % 3].store(f"m{i}", memory_id=f"id{i % 40}",
                             depth=("surface", "deep")[i % 2])

    with ThreadPoolExecutor(max_workers=9) as pool:
        list(pool.map(store, range(300)))
    assert assert_consistent(engines[0]) == 47
    journal = engines[0].sections.journal
    assert journal is not None
    assert verify_locked(engines[0].sections, journal.signer, "default").ok


def test_optimistic_commits_can_be_turned_off(redis_url: str) -> None:
    assert Settings.from_env({}).locks.optimistic
    assert not Settings.from_env({"SPIRAL_OPTIMISTIC_COMMITS": "0"}).locks.optimistic
    engine = open_engine(redis_url, optimistic=False)
    for i in range(3):
        engine.store(f"m{i}")
    assert outcomes(engine) == {}


class CountingCache(TenantCache):
    """Counts reads, so a test can tell a waiting section has asked."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, tenant: str) -> TenantState | None:
        self.reads += 1
        return super().get(tenant)


def test_a_section_that_waited_asks_by_the_state_the_holder_left(storage: Storage) -> None:
    """A commit of this process while a section waits leaves the cache current: the
    waiter then takes no snapshot. The holder commits before it leaves, not with its
    last commit: a final commit frees the lock in Redis a moment before its thread
    refreshes the cache, and a waiter that slips in there takes a snapshot (one read
    too many, never a wrong one), so only a lock held past the refresh proves this."""
    engine = engine_over(storage, sigil_secret="s")
    cache = engine.sections.cache = CountingCache()
    engine.store("warm-up")
    with ThreadPoolExecutor(max_workers=1) as pool:
        with engine.sections.enter("default", state=StateUse.LOAD) as holder:
            reads = cache.reads

            def wait_then_enter() -> dict[str, Any] | None:
                with engine.sections.enter("default", state=StateUse.LOAD) as waiter:
                    waiter.commit(final=True)
                    return waiter.fence.snapshot

            waiter = pool.submit(wait_then_enter)
            if storage.name == "redis":  # a local lock asks only once it is taken
                wait_until(lambda: cache.reads > reads, 30, message="the waiter's try")
            holder.stage(Put("t:{default}:x", "held"))
            holder.commit()
        assert waiter.result(30) is None


#: The end of a child script that holds a tenant's lock (in a `with`): it stages a
#: store of `pending` in `batch`, decided on the tenant as it found it, says "staged",
#: stops itself (SIGSTOP) until the parent resumes it past the lock's 2 s, and says
#: whether its commit then went through.
STAGED_THEN_STOPPED = """
    batch._stage(pending)
    print("staged", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
    try:
        batch._flush(final=True)
        print(json.dumps({"outcome": "committed"}), flush=True)
    except LockLost:
        print(json.dumps({"outcome": "LockLost"}), flush=True)
"""

STORE_STOPPED_IN_A_CHILD = """
import json, os, signal, sys
from spiral_tasks.combining import Pending
from spiral_tasks.errors import LockLost
from spiral_tasks.section import StateUse
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.store import StoreBatch, StoreRequest
from spiral_tasks.testing.engines import engine_over
storage = RedisStorage(sys.argv[1])
storage.init()
engine = engine_over(storage, sigil_secret="s")
pending = Pending(StoreRequest.validated("stale", "general", "shallow", None, "default", "x"))
with engine.sections.enter("default", state=StateUse.LOAD) as section:
    batch = StoreBatch(engine.context, section)
""" + STAGED_THEN_STOPPED




def assert_the_stopped_child_wrote_nothing(engine: SpiralMemory,
                                           child: subprocess.Popen[str],
                                           memories: int) -> None:
    """The resumed child (`STAGED_THEN_STOPPED`) got `LockLost` and wrote nothing: "x"
    is the parent's "mine", and the invariant, the audit chain and a rebuild agree."""
    out, _ = child.communicate(timeout=60)
    assert json.loads(out)["outcome"] == "LockLost"
    stored = engine.retrieve("x")
    assert stored is not None
    assert stored.content == "mine"
    assert assert_consistent(engine) == memories
    journal = engine.sections.journal
    assert journal is not None
    assert verify_locked(engine.sections, journal.signer, "default").ok
    assert engine.rebuild_stats().clean


def test_a_stopped_holder_cannot_commit_after_an_optimistic_commit_moved_the_tenant(
        redis_url: str) -> None:
    """A real process takes the lock, stages a store of id "x", and stops (SIGSTOP)
    past the lock's lifetime; meanwhile another process's store of the same id commits
    optimistically. Resumed, the stopped holder's commit is refused: "x" is created
    once, and the invariant and the audit chain hold."""
    engine = open_engine(redis_url)
    engine.store("warm-up")  # the cache is current: the next store may go optimistic
    child = subprocess.Popen([sys.executable, "-c", STORE_STOPPED_IN_A_CHILD, redis_url],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "staged"
        wait_until(lambda: not engine.storage.client.exists(KEYS.lock), 30,  # type: ignore[attr-defined]
                   message="the stopped child's lock to expire")
        mine = engine.store("mine", memory_id="x")
        assert mine.created
        assert outcomes(engine) == {"committed": 1}
    finally:
        os.kill(child.pid, signal.SIGCONT)
    assert_the_stopped_child_wrote_nothing(engine, child, 2)


def _store_at_once(url: str, barrier: Barrier, rounds: int, depth: str,
                   same_id: bool, results: Any, settings: dict[str, int]) -> None:
    """Each round: bring the cache to the tenant's generation (a locked no-op), wait
    for every process to be there, then store at once."""
    engine = open_engine(url, **settings)
    for turn in range(rounds):
        barrier.wait(60)
        engine.collect("absent")
        engine.sections.reset_odds()  # every process tries optimistically
        barrier.wait(60)
        try:
            stored = engine.store(f"{turn} from {os.getpid()}", depth=depth,
                                  memory_id=f"same{turn}" if same_id else None)
            results.put((turn, stored.created))
        except CapacityExceeded:
            results.put((turn, False))
    results.put(("outcomes", outcomes(engine).get("committed", 0)))


def _race(url: str, processes: int, rounds: int, depth: str, same_id: bool,
          **settings: int) -> tuple[dict[int, int], int]:
    """Stores of `processes` processes whose caches are all current, at once; how many
    were created per round, and how many committed optimistically."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    children = [context.Process(target=_store_at_once, args=(
        url, barrier, rounds, depth, same_id, results, settings)) for _ in range(processes)]
    for child in children:
        child.start()
    created: dict[int, int] = dict.fromkeys(range(rounds), 0)
    optimistic = 0
    try:
        for _ in range(processes * (rounds + 1)):
            turn, value = results.get(timeout=120)
            if turn == "outcomes":
                optimistic += value
            else:
                created[turn] += bool(value)
    finally:
        for child in children:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
    assert all(child.exitcode == 0 for child in children)
    return created, optimistic


def test_the_same_id_sent_by_processes_at_once_is_created_once(redis_url: str) -> None:
    engine = open_engine(redis_url)
    engine.store("warm-up")
    created, optimistic = _race(redis_url, 4, 20, "shallow", same_id=True)
    assert created == dict.fromkeys(range(20), 1)
    assert optimistic >= 1  # the race was between optimistic commits
    assert assert_consistent(engine) == 21


@pytest.mark.parametrize(("limits", "depth", "room"), [
    ({"max_memory_nodes": 10}, "core", 9),           # the tenant's limit
    ({"max_memory_spirals": 1}, "core", 143),        # a full spiral, no other allowed
])
def test_processes_whose_caches_show_one_free_slot_fill_it_once(
        redis_url: str, limits: dict[str, int], depth: str, room: int) -> None:
    """Every process's cache shows room for one more (protected, so nothing can be
    collected to make more): the generation check lets one optimistic commit take it."""
    engine = open_engine(redis_url, **limits)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: engine.store(f"fill {i}", depth=depth), range(room)))
    created, optimistic = _race(redis_url, 4, 2, depth, same_id=False, **limits)
    assert sum(created.values()) == 1
    assert optimistic == 1
    assert assert_consistent(engine) == room + 1
    assert engine.rebuild_stats().clean


def test_after_redis_went_back_to_a_snapshot_only_a_cache_of_that_snapshot_commits(
        tmp_path: Path) -> None:
    """Redis restarts from an older snapshot: a process whose cache was taken at the
    snapshot's generation is current again and commits optimistically (storage holds
    exactly what its cache shows); one whose cache is newer is refused, and an id it
    created after the snapshot is created again, once."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        ahead, behind = open_engine(server.url), open_engine(server.url)
        for i in range(3):
            ahead.store(f"kept {i}")
        behind.collect("absent")  # a locked no-op: its cache is at the tenant's generation
        behind.storage.client.save()  # type: ignore[attr-defined]
        ahead.store("lost", memory_id="lost")
        ahead.store("lost too")
        assert server.process is not None
        server.process.kill()  # no shutdown save: the last two commits are gone
        server.process.wait()
        server.start()
        wait_until(ahead.storage.client.ping, 30,  # type: ignore[attr-defined]
                   ignoring=(redis.ConnectionError,), message="the clients to reconnect")
        assert behind.store("from the snapshot's cache").created
        assert outcomes(behind) == {"committed": 1}
        again = ahead.store("lost, sent again", memory_id="lost")
        assert again.created
        assert outcomes(ahead)["refused:moved"] == 1
        assert assert_consistent(ahead) == 5
        journal = ahead.sections.journal
        assert journal is not None
        assert verify_locked(ahead.sections, journal.signer, "default").ok
        assert ahead.rebuild_stats().clean
    finally:
        server.stop()
