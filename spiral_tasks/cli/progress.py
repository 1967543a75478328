"""Progress bars for long work: on stderr (stdout stays for the report or the JSON),
only when stderr is a terminal (a log or a pipe gets no bar lines), and safe to
advance from the threads doing the work."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import click


class Advance(Protocol):
    def __call__(self, steps: int = 1) -> None: ...


@contextmanager
def bar(label: str, length: int) -> Iterator[Advance]:
    """A bar of `length` steps; the value advances it by n steps (default 1)."""
    guard = threading.Lock()
    with click.progressbar(length=length, label=label, file=sys.stderr,
                           hidden=not sys.stderr.isatty()) as shown:
        def advance(steps: int = 1) -> None:
            with guard:
                shown.update(steps)
        yield advance
