"""Commands that open the configured storage themselves (repair, stats, backup,
restore, perf): one line for every way that can fail, and what to run instead.

LevelDB admits one process: while a worker runs, it holds the folder, so the message
names what would work (a task sent to that worker, or stopping it), per command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, Any

import click
import redis

from spiral_tasks.cli.options import Exit
from spiral_tasks.config import Settings, StorageKind, current
from spiral_tasks.config.redis_urls import shown_url
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.errors import ConfigError, SpiralError, StorageHeld, StorageUnavailable
from spiral_tasks.factory import open_engine
from spiral_tasks.observe import NO_OBSERVER, Observer


class Failed(click.ClickException):
    """One line on stderr, `<command>: <message>`, and exit code 1."""

    exit_code = Exit.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        context = click.get_current_context(silent=True)
        self.program = context.command_path if context else "spiral"

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{self.program}: {self.message}", err=True)


class BadSettings(Failed):
    """A setting is malformed: nothing was done (exit code 2)."""

    exit_code = Exit.USAGE


def settings(error: type[Failed] = BadSettings) -> Settings:
    """This process's settings; a bad one stops the command with `error`."""
    try:
        return current()
    except ConfigError as exc:
        raise error(str(exc).replace("\n", ";")) from exc


def where(config: Settings) -> str:
    """The storage the settings select, in words (password hidden)."""
    if config.storage is StorageKind.LEVEL:
        return f"LevelDB at {config.db_path}"
    if config.storage is StorageKind.REDIS and config.redis_url:
        return f"Redis at {shown_url(config.redis_url)}"
    return "in-memory storage (this process only)"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextlib.contextmanager
def opened(config: Settings, held: str,
           observer: Observer = NO_OBSERVER) -> Iterator[SpiralMemory]:
    """The engine over the configured storage, closed afterwards. `held` says what to
    run instead while a worker holds LevelDB. Every storage failure, then and later
    (a Redis gone mid-run), becomes one line."""
    try:
        engine = open_engine(config, observer)
    except StorageHeld as exc:
        raise Failed(f"{where(config)} is held by another process, most likely a running "
                     f"worker (LevelDB admits one process at a time): {held}") from exc
    except StorageUnavailable as exc:
        raise Failed(f"cannot open {where(config)}: {first_line(exc.__cause__ or exc)}"
                     ) from exc
    try:
        yield engine
    except (SpiralError, redis.RedisError) as exc:
        raise Failed(f"{type(exc).__name__} on {where(config)}: {first_line(exc)}") from exc
    finally:
        with contextlib.suppress(Exception):
            engine.close()
