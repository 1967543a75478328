"""Coordination across processes and machines: redis-py locks and fenced commits.

Each critical section takes a fresh `redis.lock.Lock` (2 s timeout) on the tenant's
lock key, waiting at most the configured time; failing that it raises `LockTimeout`
(the Celery layer turns it into a retry). Commits are fenced: the commit script writes
only if the lock key still holds this section's token. The failure timeline it guards
against: A takes the lock; A stalls (GC pause, SIGSTOP) past the 2 s timeout; the lock
expires; B takes it and writes; A resumes and commits. Without the fence A's write
would land on top of B's; with it A gets `LockLost` and writes nothing.

Round trips per store: one to take the lock (which also reads the tenant's generation,
so the engine knows whether its cached spirals are current), one to commit and release.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import redis
import redis.lock
from redis.exceptions import LockNotOwnedError

from spiral_tasks.coordination.base import Coordinator, Fence, Snapshot
from spiral_tasks.errors import LockLost, LockTimeout
from spiral_tasks.keys import TenantKeys
from spiral_tasks.storage import codec, lua
from spiral_tasks.storage.base import Write, check_key
from spiral_tasks.storage.redis import FenceArgs, RedisStorage, directory_of

#: How long a lock lives without being extended: the runbook's 2 s.
LOCK_TTL_S = 2.0
#: Poll interval while waiting for a lock held elsewhere.
LOCK_POLL_S = 0.0005


class FencedLock(redis.lock.Lock):
    """redis-py's Lock whose acquisition also reads the tenant's generation and the
    keys the section will need, in the same round trip."""

    def __init__(self, client: redis.Redis, name: str, generation_key: str,
                 script: Any, read: Sequence[str] = (), snapshot: Snapshot | None = None,
                 **options: Any) -> None:
        super().__init__(client, name, **options)
        self.generation_key = generation_key
        self.generation = 0
        self.read_keys = list(read)
        self.read_raw: list[bytes | None] = []
        self.snapshot_request = snapshot
        self.snapshot_raw: dict[str, bytes | None] | None = None
        self._script = script

    def do_acquire(self, token: str) -> bool:
        assert self.timeout is not None
        wanted = self.snapshot_request
        keys = [self.name, self.generation_key,
                directory_of(wanted.prefix) if wanted else self.generation_key,
                *self.read_keys, *(wanted.keys if wanted else ())]
        args = [token, int(self.timeout * 1000),
                "" if wanted is None else str(wanted.unless_generation),
                wanted.prefix if wanted else "", len(self.read_keys)]
        found = self._script(keys=keys, args=args, client=self.redis)
        if found is None:
            return False
        self.generation = int(found[0])
        reads = len(self.read_keys)
        self.read_raw = list(found[2:2 + reads])
        if wanted is not None and found[1] == 1:
            rest = found[2 + reads:]
            count = len(wanted.keys)
            taken = dict(zip(wanted.keys, rest[:count], strict=True))
            listed = rest[count:]
            taken.update((name.decode(), raw) for name, raw in zip(listed[::2], listed[1::2],
                                                                   strict=True))
            self.snapshot_raw = taken
        return True


def _decode(raw: bytes | None) -> Any:
    return None if raw is None else codec.decode(raw)


class RedisFence(Fence):
    def __init__(self, storage: RedisStorage, lock: FencedLock) -> None:
        self._storage = storage
        self._lock = lock
        self._generation = lock.generation
        self.released = False
        self.read = {key: _decode(raw)
                     for key, raw in zip(lock.read_keys, lock.read_raw, strict=True)}
        if lock.snapshot_raw is not None:
            self.snapshot = {key: _decode(raw) for key, raw in lock.snapshot_raw.items()}

    @property
    def generation(self) -> int | None:
        return self._generation

    def commit(self, writes: Sequence[Write], final: bool = False) -> int | None:
        if self.released:
            raise LockLost(f"{self._lock.name} was already released by a final commit")
        token = self._lock.local.token
        applied = self._storage.apply_fenced(writes, FenceArgs(
            lock_key=self._lock.name, generation_key=self._lock.generation_key,
            token=token, expected_generation=self._generation, release=final))
        assert applied.generation is not None
        self._generation = applied.generation
        self.released = final
        return applied.last_increment

    def extend(self) -> None:
        if not self.released:
            assert self._lock.timeout is not None  # every lock here has one
            self._lock.extend(self._lock.timeout, replace_ttl=True)  # a full timeout again


class RedisCoordinator(Coordinator):
    def __init__(self, storage: RedisStorage, wait_s: float = 2.0,
                 ttl_s: float = LOCK_TTL_S) -> None:
        self._storage = storage
        self._wait_s = wait_s
        self._ttl_s = ttl_s
        self._acquire = storage.client.register_script(lua.load("acquire"))

    def claim(self, name: str, window_s: float) -> bool:
        claimed = self._storage.client.set(f"claim:{name}", os.getpid(), nx=True,
                                           px=max(1, int(window_s * 1000)))
        return bool(claimed)

    @contextmanager
    def critical(self, tenant: str, timeout_s: float | None = None,
                 read: Sequence[str] = (),
                 snapshot: Snapshot | None = None) -> Iterator[Fence]:
        keys = TenantKeys(tenant)
        wait = self._wait_s if timeout_s is None else max(0.0, timeout_s)
        lock = FencedLock(self._storage.client, keys.lock, keys.generation, self._acquire,
                          read=[check_key(k) for k in read], snapshot=snapshot,
                          timeout=self._ttl_s,
                          sleep=LOCK_POLL_S, blocking_timeout=wait)
        # The token names its process, so an operator (or a test) can tell who holds it.
        if not lock.acquire(token=f"{os.getpid()}:{uuid.uuid4().hex}"):
            raise LockTimeout(f"tenant {tenant!r} stayed locked for {wait:.3f} s; nothing "
                              "was written, try again")
        fence = RedisFence(self._storage, lock)
        try:
            yield fence
        finally:
            if not fence.released:
                # A lock that expired meanwhile is not ours to release; the fence kept
                # this section from writing after it expired.
                with suppress(LockNotOwnedError):
                    lock.release()
