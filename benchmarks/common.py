"""Shared pieces of the benchmark scripts: backends, and the package's drivers and
percentiles (`spiral_tasks.perf.measure`, which `spiral perf` uses too)."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis

from spiral_tasks.config import EncryptionSettings
from spiral_tasks.perf.measure import Run, drive
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.testing.engines import engine_over
from spiral_tasks.testing.redis_server import RedisServer

BACKENDS = ("memory", "level", "redis")


def backend_arguments(doc: str | None, backends: Sequence[str] = BACKENDS
                      ) -> argparse.ArgumentParser:
    """A benchmark's option parser: its docstring as the help, and `--backends` (all of
    `backends` unless told fewer). The script adds its own options."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=list(backends), choices=backends)
    return parser
__all__ = ["BACKENDS", "Run", "cpu_seconds", "drive", "engine_over", "median", "open_backend",
           "redis_server"]


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for one benchmark, so it can flush freely."""
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def open_backend(name: str, redis_url: str | None = None,
                 encryption: EncryptionSettings | None = None) -> Iterator[Storage]:
    """A fresh, empty backend (LevelDB in a temporary folder, Redis flushed), sealing
    memory records if `encryption` has a key."""
    if name == "redis" and redis_url is not None:
        client = redis.Redis.from_url(redis_url)
        client.flushall()  # before opening: opening marks the key a store seals with
        client.close()
    with tempfile.TemporaryDirectory() as workdir:
        storage = open_storage(name, db_path=Path(workdir) / "db", redis_url=redis_url,
                               encryption=encryption)
        try:
            yield storage
        finally:
            storage.close()


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time `pid` has used so far (0 once it is gone): what a
    process costs, whatever else the machine is running."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
