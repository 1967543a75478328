"""Argument types and exit codes shared by the command-line programs.

Every argument is checked before the program has any effect (connects, enqueues,
opens storage), with the same rules the engine applies, so a mistake costs nothing.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import click

from spiral_tasks import validation
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.model import Depth


class Exit(enum.IntEnum):
    """Exit codes of spiral-demo and spiral-enqueue (documented in their --help)."""

    OK = 0
    #: A task failed, or a service (broker, storage) cannot be reached.
    FAILED = 1
    #: Bad arguments or settings: nothing was done.
    USAGE = 2
    #: No answer within --timeout: what was sent stays queued for a worker.
    NO_ANSWER = 3


EXIT_CODES_HELP = ("Exit codes: 0 done; 1 a task failed or a service cannot be "
                   "reached; 2 bad arguments or settings (nothing done); 3 no answer "
                   "within --timeout (what was sent stays queued).")


class Checked(click.ParamType[str]):
    """A click type that applies one of the engine's validators."""

    def __init__(self, name: str, check: Any) -> None:
        self.name = name
        self._check = check

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        try:
            return self._check(self.name, value)
        except InvalidArgument as exc:
            self.fail(exc.problem, param, ctx)


class Seconds(click.ParamType[float]):
    """A finite number of seconds above 0 (not nan, not inf: a wait must end)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not (math.isfinite(seconds) and seconds > 0):
            self.fail(f"{value!r} must be a finite number of seconds above 0", param, ctx)
        return seconds


TENANT = Checked("tenant", validation.name)
LABEL = Checked("type", validation.name)
DEPTH = click.Choice([d.value for d in Depth])
#: At most a million tasks per command: more is a typo, or a job for a producer app.
COUNT = click.IntRange(min=1, max=1_000_000)
SECONDS = Seconds()

