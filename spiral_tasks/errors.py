"""The errors the engine raises, so callers (tasks, CLIs) can tell them apart.

Every error that reaches a caller says what was wrong in words a producer can act on;
validation errors name the offending argument. Lock errors live here, not beside the
lock code, so the task layer can retry them without importing a storage backend.
"""

from __future__ import annotations

from collections.abc import Sequence


class SpiralError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidArgument(SpiralError, ValueError):
    """A caller passed a bad argument; nothing was written."""

    def __init__(self, argument: str, problem: str) -> None:
        # args stay (argument, problem) so the error rebuilds itself on the producer's
        # side of a Celery result (exc_type(*exc_message)).
        super().__init__(argument, problem)
        self.argument = argument
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.argument}: {self.problem}"


class CapacityExceeded(SpiralError):
    """The tenant is full even after garbage collection had its chance."""


class LockTimeout(SpiralError, TimeoutError):
    """A critical section could not be entered in time; nothing was written."""


class LockLost(SpiralError):
    """The lock expired (or was taken over) before a commit or an extension: nothing
    more was written, and the operation may be retried from the start."""


class StaleGeneration(SpiralError):
    """The tenant changed under a lock we still hold (a writer skipped the lock, or the
    data set went back in time): nothing was written."""


class CorruptRecord(SpiralError, ValueError):
    """A stored record does not decode (bad JSON, a truncated value, a sealed value that
    does not open) or does not hold what its key says (wrong types, another record's
    id). Not transient: trying again meets the same bytes, so tasks fail at once,
    naming the key. A rebuild (`spiral repair`, `spiral.rebuild_stats`, a worker's
    startup rebuild) moves such a record to its tenant's quarantine and goes on."""

    def __init__(self, key: str, reason: str) -> None:
        # args stay (key, reason) so the error rebuilds itself on the producer's side.
        super().__init__(key, reason)
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return (f"{self.key}: stored record is corrupt ({self.reason}); run spiral repair "
                "(or send spiral.rebuild_stats) to quarantine it")


class QuarantineRefused(SpiralError):
    """A rebuild found most of a tenant's records unreadable: a wrong key or codec, not
    corruption. Nothing of the tenant's was quarantined or corrected (the rebuild
    reports it under `refused` and goes on with the other tenants)."""


class StorageUnavailable(SpiralError):
    """The storage backend cannot be opened or reached."""


class StorageHeld(StorageUnavailable):
    """Another process holds the storage (LevelDB admits one process at a time): a
    command-line program says what to run instead, e.g. send the work to that worker."""


class EncryptionKeyMissing(StorageUnavailable):
    """The store holds values sealed under a key this process was not given (or a key
    was given to a process whose store needs another): the store is not opened, so
    nothing is read as garbage and nothing is written under the wrong key."""


class SealBroken(SpiralError):
    """A stored value does not open: sealed under a key this process lacks, altered,
    copied from another key, tenant or memory id, or unsealed where the store requires
    sealing. Nothing was read from it; it is never retried (waiting brings no key)."""


class ConfigError(SpiralError, ValueError):
    """One or more settings are malformed or cannot work together."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(list(problems))
        self.problems = list(problems)

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"bad setting: {self.problems[0]}"
        return "bad settings:\n" + "\n".join(f"  {p}" for p in self.problems)
