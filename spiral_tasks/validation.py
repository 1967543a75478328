"""Checks on what callers pass in, so bad input fails before anything is written."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from spiral_tasks.config.settings import MAX_GC_BUDGET_MS
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.model import Depth

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MEMORY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
MAX_CONTENT_BYTES = 1024 * 1024
MAX_ASSOCIATIONS = 1000
#: How much of a bad value, and how many ids, an error message quotes: messages go
#: into result backends and logs, which must not receive a megabyte per mistake.
QUOTE_CHARS = 80
QUOTE_IDS = 5


def quote(value: Any) -> str:
    """`repr(value)`, cut short."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."


def ids(values: Sequence[str]) -> str:
    """A list of ids for a message: the first few, then how many more."""
    shown = ", ".join(values[:QUOTE_IDS])
    more = len(values) - QUOTE_IDS
    return f"{shown} and {more} more" if more > 0 else shown


#: Names that matched `NAME_PATTERN` (plain `str` only): every store names a tenant and
#: a type, nearly always ones seen before, and the match costs more than the lookup.
#: Forgotten whole when it fills, so callers naming ever new tenants cannot grow it.
_NAMES_SEEN: set[str] = set()
NAMES_REMEMBERED = 1024


def name(argument: str, value: Any) -> str:
    """A tenant or a memory type: a short label."""
    if type(value) is str and value in _NAMES_SEEN:
        return value
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidArgument(argument, f"must match {NAME_PATTERN.pattern}, got {quote(value)}")
    if type(value) is str:
        if len(_NAMES_SEEN) >= NAMES_REMEMBERED:
            _NAMES_SEEN.clear()
        _NAMES_SEEN.add(value)
    return value


def memory_id(argument: str, value: Any) -> str:
    if not isinstance(value, str) or not MEMORY_ID_PATTERN.fullmatch(value):
        raise InvalidArgument(argument,
                              f"must match {MEMORY_ID_PATTERN.pattern}, got {quote(value)}")
    return value


def content(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument("content", f"must be a string, got {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument("content", "is not valid Unicode (lone surrogate)") from None
    if size > MAX_CONTENT_BYTES:
        raise InvalidArgument("content", f"is {size} bytes; the limit is {MAX_CONTENT_BYTES}")
    return value


#: Each depth by its value: one dict lookup, where `Depth(value)` takes the enum's call.
_DEPTHS: dict[Any, Depth] = {d.value: d for d in Depth}


def depth(value: Any) -> Depth:
    try:
        found = _DEPTHS.get(value) if type(value) is str else None
        return found if found is not None else Depth(value)
    except ValueError:
        choices = ", ".join(d.value for d in Depth)
        raise InvalidArgument("depth", f"must be one of {choices}, got {quote(value)}") from None


def associations(value: Any) -> tuple[str, ...]:
    """A fresh tuple of distinct ids: the caller's list is never kept or aliased. Only
    a list (or tuple): a dict or a set would be taken for its keys or in no order."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidArgument("associations", "must be a list of memory ids, got "
                              f"{type(value).__name__}")
    if len(value) > MAX_ASSOCIATIONS:
        raise InvalidArgument("associations", f"holds {len(value)} ids; the limit is "
                              f"{MAX_ASSOCIATIONS}")
    return tuple(dict.fromkeys(memory_id("associations", item) for item in value))


def time_budget_ms(value: Any) -> float:
    """A positive, finite budget no longer than a GC task may run."""
    problem = f"must be a number of milliseconds above 0 and at most {MAX_GC_BUDGET_MS:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument("time_budget_ms", f"{problem}, got {quote(value)}")
    try:
        budget = float(value)
    except OverflowError:
        raise InvalidArgument("time_budget_ms", f"{problem}, got {quote(value)}") from None
    if not (math.isfinite(budget) and 0 < budget <= MAX_GC_BUDGET_MS):
        raise InvalidArgument("time_budget_ms", f"{problem}, got {quote(value)}")
    return budget
