"""The text Celery makes of every task's return value, made cheaply when it is small.

After each successful task, Celery's tracer computes `saferepr(result, 1024)` in the
worker child, for its success log line and the `task-succeeded` event, whether or not
either is on. `saferepr` walks the value token by token so that a huge one costs no
more than its first 1,024 characters, and so costs far more than `repr` for the small
dict a store answers: about 1.2 ms against 8 µs on a loaded machine (BENCHMARKS.md,
"Store task against no-op"), the largest part of what a store task costs beyond a
no-op in the Celery layer. The spiral tasks answer JSON data; for such a value, small
and shallow, `repr` gives exactly what `saferepr` would (checked by the tests), so it
is used; anything else, or anything longer, still goes to `saferepr`.
"""

from __future__ import annotations

from typing import Any

from celery.app import trace
from celery.utils.saferepr import saferepr

#: Containers nested deeper than this go to saferepr (which elides past its 3 levels).
MAX_DEPTH = 2
#: Items (keys, values, elements) walked at most before giving up on the cheap path.
MAX_ITEMS = 64
_SCALARS = (str, int, float, bool, type(None))


def quick_repr(value: Any, maxlen: int = 1024) -> str:
    """`saferepr(value, maxlen)`, by `repr` when `value` is small JSON data."""
    if _small(value, 0, [MAX_ITEMS]):
        text = repr(value)
        if len(text) <= maxlen:
            return text
    return str(saferepr(value, maxlen))


def _small(value: Any, depth: int, budget: list[int]) -> bool:
    budget[0] -= 1
    kind = type(value)
    if budget[0] < 0:
        small = False
    elif kind is str:
        # saferepr always quotes with ' and writes control characters and backslashes
        # as they are; repr switches to " and escapes them. Ids, tenants and sigils
        # have none of these.
        small = value.isprintable() and "'" not in value and "\\" not in value
    elif kind in _SCALARS:
        small = True
    elif depth >= MAX_DEPTH:
        small = False
    elif kind is dict:
        small = all(type(k) is str and _small(k, depth + 1, budget)
                    and _small(v, depth + 1, budget) for k, v in value.items())
    else:
        small = kind is list and all(_small(v, depth + 1, budget) for v in value)
    return small


def install() -> None:
    """Make Celery's tracer (which looks `saferepr` up when each task ends) use
    `quick_repr`. Idempotent; done where the tasks are defined, so every worker has it."""
    trace.saferepr = quick_repr  # type: ignore[attr-defined]
