"""The errors the engine raises, so callers (tasks, CLIs) can tell them apart.

Every error that reaches a caller says what was wrong in words a producer can act on;
validation errors name the offending argument.
"""

from __future__ import annotations


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


class StorageUnavailable(SpiralError):
    """The storage backend cannot be opened or reached."""
