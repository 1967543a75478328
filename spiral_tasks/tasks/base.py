"""The base of every spiral task: arguments checked like the engine checks them, and
transient failures retried with backoff.

Producers send tasks by name from any language, so nothing checks their arguments
before a worker runs them. An unknown keyword, a missing argument or too many
positional ones would surface as Python's TypeError from deep inside Celery; here
they become `InvalidArgument` naming the argument, like every other bad input.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
from typing import Any

import redis
from celery import Task

from spiral_tasks import validation
from spiral_tasks.audit.actor import Actor, acting
from spiral_tasks.config import RetryPolicy, current
from spiral_tasks.errors import (
    CapacityExceeded,
    CorruptRecord,
    InvalidArgument,
    LockLost,
    LockTimeout,
    StaleGeneration,
    StorageUnavailable,
)

log = logging.getLogger(__name__)

#: Failures worth trying again: the lock was busy or lost, Redis was unreachable.
TRANSIENT = (LockTimeout, LockLost, StaleGeneration, StorageUnavailable,
             redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def backoff(retries: int, policy: RetryPolicy | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^n)]."""
    policy = policy or current().tasks.retry
    return random.uniform(0, min(policy.max_s, policy.base_s * 2 ** retries))


def check_arguments(name: str, signature: inspect.Signature, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> None:
    """Raise `InvalidArgument` unless `args` and `kwargs` fit `signature`."""
    accepted = list(signature.parameters)
    unknown = [k for k in kwargs if k not in signature.parameters]
    if unknown:
        raise InvalidArgument(validation.quote(unknown[0]).strip("'\""),
                              f"is not an argument of {name} (its arguments: "
                              f"{', '.join(accepted)})")
    if len(args) > len(accepted):
        raise InvalidArgument("args", f"{name} takes at most {len(accepted)} positional "
                              f"arguments ({', '.join(accepted)}), got {len(args)}")
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        given = set(accepted[:len(args)]) | set(kwargs)
        missing = [p.name for p in signature.parameters.values()
                   if p.default is inspect.Parameter.empty and p.name not in given]
        twice = [p for p in accepted[:len(args)] if p in kwargs]
        if twice:
            raise InvalidArgument(twice[0], "was given both by position and by name") \
                from None
        raise InvalidArgument(missing[0] if missing else "args",
                              f"is required by {name}") from None


class SpiralTask(Task[Any, Any]):
    """Turns transient failures into retries (with backoff and jitter). Bad input and a
    full tenant are expected outcomes: logged without a traceback, never retried. So
    is a corrupt record (trying again meets the same bytes), logged as an error in one
    line naming the key, for an operator to run `spiral repair`."""

    throws = (InvalidArgument, CapacityExceeded, CorruptRecord)

    @functools.cached_property
    def _signature(self) -> inspect.Signature:
        # Taken once per task: inspect.signature costs more than the check itself.
        return inspect.signature(self.run)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        # `self` positional-only: a producer's keyword named "self" is refused like
        # any unknown one, not a TypeError ("multiple values for argument 'self'").
        check_arguments(self.name, self._signature, args, kwargs)
        try:
            # The audit log names this task and worker (the engine cannot ask Celery).
            with acting(Actor(task=self.request.id, worker=self.request.hostname)):
                return self.run(*args, **kwargs)
        except CorruptRecord as exc:
            log.error("%s: %s", self.name, exc)
            raise
        except TRANSIENT as exc:
            if self.request.called_directly:
                raise
            policy = current().tasks.retry
            raise self.retry(exc=exc, countdown=backoff(self.request.retries, policy),
                             max_retries=policy.max_retries) from exc
