"""Coordination across processes and machines: redis-py locks and fenced commits.

Each critical section takes a fresh `redis.lock.Lock` (2 s timeout) on the tenant's
lock key, waiting at most the configured time; failing that it raises `LockTimeout`
(the Celery layer turns it into a retry). Commits are fenced: the commit script
(`lua/commit.lua`) writes only if the lock key still holds this section's token. The
failure timeline it guards against: A takes the lock; A stalls (GC pause, SIGSTOP)
past the 2 s timeout; the lock expires; B takes it and writes; A resumes and commits.
Without the fence A's write would land on top of B's; with it A gets `LockLost` and
writes nothing. Every way of finding the lock gone (a commit, an extension) raises
`LockLost`, which callers retry.

Round trips per store: one to take the lock (which also reads the tenant's generation,
the keys the section asked for and, when this process's cache is stale, the snapshot),
one to commit and release; while the lock is held elsewhere, a waiter polls with a bare
EXISTS and sends the acquire script again only once it is free. A store whose
process's cache is current commits in one round trip without the lock
(`OptimisticFence`), unless that is refused; refused because the tenant moved while
the lock was free, the same script takes the lock (same token, TTL and fence) and
reads what the acquire script would, so the store goes on with one more round trip.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import redis
import redis.lock
from redis.commands.core import Script
from redis.exceptions import LockError

from spiral_tasks.coordination import lua as coordination_lua
from spiral_tasks.coordination.base import (
    Coordinator,
    Fence,
    NotOptimistic,
    Refused,
    Snapshot,
    SnapshotRequest,
    new_generation,
    resolve,
)
from spiral_tasks.coordination.waiters import waiters_of
from spiral_tasks.errors import LockLost, LockTimeout, StaleGeneration
from spiral_tasks.keys import TenantKeys, claim_key, directory_of
from spiral_tasks.storage import codec, lua
from spiral_tasks.storage.base import Write, check_key, decode_or_unreadable, prepare
from spiral_tasks.storage.codec import Codec
from spiral_tasks.storage.redis import (
    WRITE_ERRORS,
    ErrorReply,
    RedisStorage,
    run_script,
    write_args,
)

#: How long a lock lives without being extended: the runbook's 2 s.
LOCK_TTL_S = 2.0
#: Poll interval while waiting for a lock held elsewhere.
LOCK_POLL_S = 0.0005
#: Error replies of the commit script.
COMMIT_ERRORS: dict[str, ErrorReply] = {
    **WRITE_ERRORS, "LOCKLOST ": LockLost, "STALE ": StaleGeneration}
#: Error replies of the optimistic commit script.
OPTIMISTIC_ERRORS: dict[str, ErrorReply] = {**WRITE_ERRORS, "REFUSED ": Refused}


def _snapshot_mode(wanted: Snapshot | None) -> str:
    if wanted is None:
        return "-"
    if wanted.unless_generation is None:
        return "*"
    return "=" + wanted.unless_generation


class FencedLock(redis.lock.Lock):
    """redis-py's Lock whose acquisition also reads the tenant's generation and the
    keys the section will need, in the same round trip."""

    def __init__(self, client: redis.Redis, name: str, generation_key: str,
                 script: Script, read: Sequence[str] = (), snapshot: SnapshotRequest = None,
                 **options: Any) -> None:
        super().__init__(client, name, **options)
        self.generation_key = generation_key
        self.generation = ""
        self.read_keys = list(read)
        self.read_raw: list[bytes | None] = []
        self.request = snapshot
        self.snapshot_request: Snapshot | None = None
        self.snapshot_raw: dict[str, bytes | None] | None = None
        self.undeclared: list[str] = []
        self._script = script
        self._polled = False
        #: How many times it asked for the lock (more than once: it waited).
        self.tries = 0
        #: When the last request that could take it was sent (see `Fence.taken_at`).
        self.tried_at = 0.0

    def do_acquire(self, token: str | bytes) -> bool:
        assert self.timeout is not None
        self.tries += 1
        # Waiting: ask whether the lock is still held, a few bytes, rather than send the
        # acquire script every spiral key again, polls on end, to a Redis the holder needs.
        if self._polled and self.redis.exists(self.name):
            return False
        self._polled = True
        self.tried_at = time.perf_counter()
        wanted = resolve(self.request)
        keys = [self.name, self.generation_key,
                directory_of(wanted.prefix) if wanted else self.generation_key,
                *self.read_keys, *(wanted.keys if wanted else ())]
        args = [token, int(self.timeout * 1000), _snapshot_mode(wanted),
                wanted.prefix if wanted else "", len(self.read_keys)]
        found = self._script(keys=keys, args=args, client=self.redis)
        if found is None:
            return False
        self.found(wanted, found)
        return True

    def found(self, wanted: Snapshot | None, found: list[Any]) -> None:
        """Take in what a lock-taking script read (`lua/reads.lua`'s reply)."""
        self.snapshot_request = wanted
        # The generation key's raw text, compared as it is and never re-encoded: any
        # value (a token, an older version's integer) is a generation a commit can match.
        self.generation = found[0].decode(errors="replace")
        reads = len(self.read_keys)
        self.read_raw = list(found[2:2 + reads])
        if wanted is not None and found[1] == 1:
            rest = found[2 + reads:]
            self.snapshot_raw = dict(zip(wanted.keys, rest[:len(wanted.keys)], strict=True))
            self.undeclared = [name.decode() for name in rest[len(wanted.keys):]]

    def taken_by(self, token: bytes, wanted: Snapshot, found: list[Any],
                 sent_at: float) -> None:
        """The lock was taken with `token` by another script (a refused optimistic
        commit) sent at `sent_at`, which read `found`: hold it as if `acquire` had
        taken it."""
        self.local.token = token
        self.tried_at = sent_at
        self.found(wanted, found)


def _decode(key: str, raw: bytes | None, values: Codec) -> Any:
    """A value read with the lock: a bad one stays `Unreadable` until a section reads
    it, so entering never fails for a record the operation does not need. (A record
    under a key this process lacks raises `SealBroken` here: the lock is released.)"""
    return None if raw is None else decode_or_unreadable(key, raw, values)


class _Decoded(Mapping[str, Any]):
    """A snapshot's values, each decoded when first asked for: a process whose cache
    went stale (another process wrote the tenant) takes a snapshot of every spiral,
    but rebuilds its state only from those whose bytes changed (`TenantState.
    from_snapshot`), so the others are never opened."""

    def __init__(self, raw: dict[str, bytes | None], values: Codec) -> None:
        self._raw = raw
        self._values = values
        self._decoded: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._decoded[key]
        except KeyError:
            value = self._decoded[key] = _decode(key, self._raw[key], self._values)
            return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class RedisFence(Fence):
    def __init__(self, storage: RedisStorage, lock: FencedLock, commit: Script) -> None:
        self._storage = storage
        self._lock = lock
        self._commit = commit
        self._generation = lock.generation
        self.released = False
        self.waited = lock.tries > 1
        self.taken_at = lock.tried_at
        stored = storage.codec
        self.read = {key: _decode(key, raw, stored)
                     for key, raw in zip(lock.read_keys, lock.read_raw, strict=True)}
        if lock.snapshot_raw is not None:
            taken = dict(lock.snapshot_raw)
            # Names the lock's script could list but not read: read them now, under
            # the lock (rare: a key created since this process last looked).
            if lock.undeclared:
                values: list[bytes | None] = storage.client.mget(  # type: ignore[assignment]
                    lock.undeclared)
                taken.update(zip(lock.undeclared, values, strict=True))
            self.snapshot = _Decoded(taken, stored)
            self.snapshot_raw = taken

    @property
    def generation(self) -> str:
        return self._generation

    @property
    def token(self) -> bytes:
        token: bytes = self._lock.local.token
        return token

    def commit(self, writes: Sequence[Write], final: bool = False) -> int | None:
        if self.released:
            raise LockLost(f"{self._lock.name} was already released by a final commit")
        encoded = prepare(writes, self._storage.codec)
        if not encoded:
            if final:
                self.release()
            return None
        # Stored as JSON, like every value, so a listing of all keys decodes.
        generation = codec.encode(new_generation()).decode()
        lock_key = self._lock.name
        keys, argv = write_args(encoded, placeholder=lock_key)
        (last,) = run_script(
            self._commit, [lock_key, self._lock.generation_key, *keys],
            [self.token, self._generation, generation, "1" if final else "0", *argv],
            COMMIT_ERRORS)
        self._generation = generation
        self.released = final
        return None if last is None else int(last)

    def extend(self) -> None:
        if self.released:
            return
        assert self._lock.timeout is not None  # every lock here has one
        try:
            self._lock.extend(self._lock.timeout, replace_ttl=True)  # a full lifetime again
        except LockError as exc:  # LockNotOwnedError included: it expired meanwhile
            raise LockLost(f"{self._lock.name} expired before it could be extended: "
                           f"{exc}") from exc

    def release(self) -> None:
        self.released = True
        # A lock that expired meanwhile is not ours to release; the fence kept this
        # section from writing after it expired.
        with suppress(LockError):
            self._lock.release()


class OptimisticFence(Fence):
    """A commit without the lock (`lua/optimistic.lua`): one round trip instead of two,
    for a writer whose cache is current. It proves nothing until it commits, so it
    commits once: a section that needs a second commit (making room) or a longer hold
    raises `NotOptimistic` and goes the locked way.

    Given `take` (a lock not yet taken), a commit refused because the tenant moved
    takes the lock in the same round trip: then `Refused.locked` is the critical
    section over it, so the writer's locked retry costs one round trip (the commit),
    not two: in round trips an optimistic attempt is then never worse than the locked
    way (its serving of the batch, done again under the lock, is what a refusal still
    costs, which is why `Sections` tries only where attempts mostly succeed)."""

    def __init__(self, coordinator: RedisCoordinator, script: Script, keys: TenantKeys,
                 generation: str, absent: Sequence[str], present: Sequence[str],
                 known: dict[str, Any], take: FencedLock | None = None) -> None:
        self._coordinator = coordinator
        self._storage = coordinator.storage
        self._script = script
        self._keys = keys
        self._generation = generation
        self._assumed = [*(check_key(k) for k in absent), *(check_key(k) for k in present)]
        self._counts = [len(absent), len(present)]
        self._take = take
        self.read = known
        self.committed = False

    @property
    def generation(self) -> str:
        return self._generation

    def commit(self, writes: Sequence[Write], final: bool = False) -> int | None:
        if not final or self.committed:
            raise NotOptimistic("an optimistic section commits once, at its end")
        self.committed = True
        encoded = prepare(writes, self._storage.codec)
        if not encoded and not self._assumed:
            return None
        generation = codec.encode(new_generation()).decode() if encoded else self._generation
        lock_key = self._keys.lock
        take = self._take
        wanted = resolve(take.request) if take is not None else None
        token = b"" if take is None else take.redis.get_encoder().encode(new_token())
        read_keys = take.read_keys if take is not None and wanted is not None else []
        declared = wanted.keys if wanted is not None else ()
        keys, argv = write_args(encoded, placeholder=lock_key)
        sent_at = time.perf_counter()
        reply = run_script(
            self._script,
            [lock_key, self._keys.generation,
             directory_of(wanted.prefix) if wanted else self._keys.generation,
             *read_keys, *declared, *self._assumed, *keys],
            [self._generation, generation, *self._counts, token if wanted else b"",
             int(self._coordinator.ttl_s * 1000), wanted.prefix if wanted else "",
             len(read_keys), len(declared), *argv], OPTIMISTIC_ERRORS)
        if take is not None and wanted is not None and len(reply) == 2:
            # {'moved', what the lock's reads found}: refused, and the lock is ours.
            take.taken_by(token, wanted, reply[1], sent_at)
            raise Refused(reply[0].decode(), locked=self._coordinator.held(take))
        self._generation = generation
        (last,) = reply
        return None if last is None else int(last)

    def extend(self) -> None:
        raise NotOptimistic("an optimistic section holds no lock to extend")


def new_token() -> str:
    """A lock token; it names its process, so an operator (or a test) can tell who
    holds the lock."""
    return f"{os.getpid()}:{uuid.uuid4().hex}"


class RedisCoordinator(Coordinator):
    def __init__(self, storage: RedisStorage, wait_s: float = 2.0,
                 ttl_s: float = LOCK_TTL_S, optimistic: bool = True) -> None:
        self.storage = storage
        self._wait_s = wait_s
        self.ttl_s = ttl_s
        self._optimistic_on = optimistic
        package = coordination_lua.__name__
        self._acquire = storage.script(lua.load("acquire", package))
        self._commit = storage.script(lua.load("commit", package))
        self._optimistic = storage.script(lua.load("optimistic", package))
        #: This process's threads waiting for each tenant's lock (see `let_waiters_in`).
        self.waiters = waiters_of(storage)

    @property
    def lock_lifetime_s(self) -> float:
        return self.ttl_s

    def let_waiters_in(self, tenant: str, until: float) -> bool:
        # This process's waiters are counted; another process's poll the lock key
        # unseen: the caller leaves them room.
        self.waiters.let_in(tenant, until)
        return False

    @property
    def commits_optimistically(self) -> bool:
        return self._optimistic_on

    def optimistic(self, tenant: str, generation: str, absent: Sequence[str],
                   present: Sequence[str], known: dict[str, Any], *,
                   read: Sequence[str] = (),
                   snapshot: Snapshot | None = None) -> Fence | None:
        if not self._optimistic_on:
            return None
        keys = TenantKeys(tenant)
        take = None if snapshot is None else self._lock(keys, read, snapshot, self._wait_s)
        return OptimisticFence(self, self._optimistic, keys, generation, absent, present,
                               known, take)

    def claim(self, name: str, window_s: float) -> bool:
        claimed = self.storage.client.set(claim_key(name), os.getpid(), nx=True,
                                          px=max(1, int(window_s * 1000)))
        return bool(claimed)

    def _lock(self, keys: TenantKeys, read: Sequence[str], snapshot: SnapshotRequest,
              wait: float) -> FencedLock:
        return FencedLock(self.storage.client, keys.lock, keys.generation, self._acquire,
                          read=[check_key(k) for k in read], snapshot=snapshot,
                          timeout=self.ttl_s, sleep=LOCK_POLL_S, blocking_timeout=wait)

    @contextmanager
    def critical(self, tenant: str, timeout_s: float | None = None,
                 read: Sequence[str] = (),
                 snapshot: SnapshotRequest = None) -> Iterator[Fence]:
        wait = self._wait_s if timeout_s is None else max(0.0, timeout_s)
        lock = self._lock(TenantKeys(tenant), read, snapshot, wait)
        token = new_token()
        began = time.monotonic()
        # Counted as a waiter (see `let_waiters_in`) once the first try found it taken;
        # a caller that may not wait (or no longer) makes no second try.
        if not lock.acquire(token=token, blocking=False):
            left = wait - (time.monotonic() - began)
            taken = False
            if left > 0:
                with self.waiters.waiting(tenant):
                    taken = lock.acquire(token=token, blocking_timeout=left)
            if not taken:
                raise LockTimeout(f"tenant {tenant!r} stayed locked for {wait:.3f} s; "
                                  "nothing was written, try again")
        with self.held(lock) as fence:
            yield fence

    @contextmanager
    def held(self, lock: FencedLock) -> Iterator[Fence]:
        """The critical section over `lock`, taken (by `acquire`, or by a refused
        optimistic commit): its fence, and the lock released on leaving."""
        try:
            fence = RedisFence(self.storage, lock, self._commit)
        except BaseException:
            # A value read with the lock that this process cannot open (a sealed record
            # under a key it lacks): refuse, and leave the lock to the next writer now
            # rather than when it expires.
            with suppress(LockError):
                lock.release()
            raise
        try:
            yield fence
        finally:
            if not fence.released:
                fence.release()
