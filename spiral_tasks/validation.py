"""Checks on what callers pass in, so bad input fails before anything is written."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from spiral_tasks.errors import InvalidArgument
from spiral_tasks.model import Depth

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MEMORY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
MAX_CONTENT_BYTES = 1024 * 1024


def name(argument: str, value: Any) -> str:
    """A tenant or a memory type: a short label."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidArgument(argument, f"must match {NAME_PATTERN.pattern}, got {value!r}")
    return value


def memory_id(argument: str, value: Any) -> str:
    if not isinstance(value, str) or not MEMORY_ID_PATTERN.fullmatch(value):
        raise InvalidArgument(argument,
                              f"must match {MEMORY_ID_PATTERN.pattern}, got {value!r}")
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


def depth(value: Any) -> Depth:
    try:
        return Depth(value)
    except ValueError:
        choices = ", ".join(d.value for d in Depth)
        raise InvalidArgument("depth", f"must be one of {choices}, got {value!r}") from None


def associations(value: Any) -> tuple[str, ...]:
    """A fresh tuple of distinct ids: the caller's list is never kept or aliased."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidArgument("associations", "must be a list of memory ids")
    ids = [memory_id("associations", item) for item in value]
    return tuple(dict.fromkeys(ids))


def time_budget_ms(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidArgument("time_budget_ms", f"must be a positive number, got {value!r}")
    return float(value)
