"""Fixtures that start real servers, in one place.

Redis: one `redis-server` per test session on a free loopback port (its own, so a
fault test may stop and restart it), flushed before each test. LevelDB: a fresh
database in a temporary folder per test. Nothing here is faked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from spiral_tasks.config import Limits
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.factory import open_coordinator
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.level import LevelStorage
from spiral_tasks.storage.memory import MemoryStorage
from spiral_tasks.storage.redis import RedisStorage
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.redis_server import RedisServer

BACKENDS = ["memory", "level", "redis"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


def make_storage(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    storage: Storage
    if backend == "memory":
        storage = MemoryStorage()
    elif backend == "level":
        storage = LevelStorage(tmp_path / "spiraldb")
    else:
        storage = RedisStorage(request.getfixturevalue("redis_url"))
    storage.init()
    return storage


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    store = make_storage(request.param, tmp_path, request)
    yield store
    store.close()


class Clock:
    """A clock the test moves by hand, so GC eligibility is decided, not waited for."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


EngineFactory = Callable[..., SpiralMemory]



@pytest.fixture
def make_engine(storage: Storage, clock: Clock) -> EngineFactory:
    """Engines over the parametrized storage; each call may set its own limits."""

    def build(**limits: float) -> SpiralMemory:
        settings = Limits(**limits)  # type: ignore[arg-type]
        return SpiralMemory(storage, open_coordinator(storage, settings), settings,
                            sigil_secret="test-secret", clock=clock)

    return build


@pytest.fixture
def engine(make_engine: EngineFactory) -> SpiralMemory:
    return make_engine()


# --- Celery workers, as real processes -------------------------------------------------

def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (a prefork worker's pool children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class CeleryProcess:
    """`celery -A spiral_tasks <args>` as a subprocess with its own environment."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, name: str) -> None:
        self.args = args
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "spiral_tasks", *self.args],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)
        for child in child_pids(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


def worker_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPIRAL_", "REDIS_URL", "CELERY_"))}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def start_worker(env: dict[str, str], workdir: Path, name: str, *extra: str,
                 concurrency: int = 2, pool: str = "prefork") -> CeleryProcess:
    return CeleryProcess(["worker", "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h",
                          "-l", "INFO", *extra], env, workdir, name).start()


def wait_for_workers(app: Celery, names: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    wanted = {f"{n}@{socket.gethostname()}" for n in names}
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        if wanted <= {name for reply in replies for name in reply}:
            return
    raise RuntimeError(f"workers {sorted(wanted)} did not answer within {timeout} s")


@pytest.fixture(scope="module")
def worker_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of the module's own (broker, results, storage, locks) for its workers."""
    server = RedisServer(tmp_path_factory.mktemp("worker-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def producer(worker_redis: RedisServer) -> Celery:
    """A producer app talking to `worker_redis`, as a client program would."""
    return create_app(worker_env(worker_redis.url))


@pytest.fixture(scope="module")
def workers(worker_redis: RedisServer, producer: Celery,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[CeleryProcess]]:
    """Two worker nodes, prefork with two children each, consuming every queue."""
    workdir = tmp_path_factory.mktemp("workers")
    env = worker_env(worker_redis.url)
    nodes = [start_worker(env, workdir, name) for name in ("w1", "w2")]
    try:
        wait_for_workers(producer, ["w1", "w2"])
        yield nodes
    finally:
        for node in nodes:
            node.stop()
