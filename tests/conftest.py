"""Fixtures that start real servers, in one place.

Redis: one `redis-server` per test session on a free loopback port (its own, so a
fault test may stop and restart it), flushed before each test. LevelDB: a fresh
database in a temporary folder per test. Nothing here is faked.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir

from spiral_tasks.config import EncryptionSettings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.storage.base import Storage
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    node_name,
    running_workers,
    worker_env,
)
from spiral_tasks.testing.certificates import Certificates
from spiral_tasks.testing.encryption import new_key, sealing
from spiral_tasks.testing.engines import engine_over
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until_drained
from tests.scripts import Flower, running_flower

BACKENDS = ["memory", "level", "redis"]

# Property tests (hypothesis) are reproducible: the same examples on every run and
# machine (derandomized, no example database), and hypothesis's caches go to the
# temporary folder, not into the checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "spiral-tasks-hypothesis")
hypothesis_settings.register_profile("spiral", derandomize=True, database=None,
                                     deadline=None)
hypothesis_settings.load_profile("spiral")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


# --- Redis over TLS ---------------------------------------------------------------------

#: The password of the TLS server's default user (its administrator).
TLS_ADMIN_PASSWORD = "admin-pw-3c1f9e"


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA of the session's own, with a server certificate for 127.0.0.1 and a client
    certificate (made by `openssl`, as ops/RUNBOOK.md makes them)."""
    return Certificates.make(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def tls_redis(certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[RedisServer]:
    """A Redis of the module's own that speaks TLS only and verifies its clients'
    certificates; its default user needs TLS_ADMIN_PASSWORD."""
    server = RedisServer(tmp_path_factory.mktemp("tls-redis"), tls=certificates,
                         password=TLS_ADMIN_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


def make_storage(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                 encryption: EncryptionSettings | None = None) -> Storage:
    url = request.getfixturevalue("redis_url") if backend == "redis" else None
    return open_storage(backend, db_path=tmp_path / "spiraldb", redis_url=url,
                        encryption=encryption)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    store = make_storage(request.param, tmp_path, request)
    yield store
    store.close()


@pytest.fixture
def sealing_key() -> bytes:
    """A fresh encryption key (`spiral_tasks.testing.encryption`)."""
    return new_key()


@pytest.fixture(params=BACKENDS)
def sealed_storage(request: pytest.FixtureRequest, tmp_path: Path,
                   sealing_key: bytes) -> Iterator[Storage]:
    """Each backend, opened with `sealing_key`: memory records are sealed."""
    store = make_storage(request.param, tmp_path, request, sealing(sealing_key))
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

    def build(**overrides: float) -> SpiralMemory:
        return engine_over(storage, clock=clock, **overrides)

    return build


@pytest.fixture
def engine(make_engine: EngineFactory) -> SpiralMemory:
    return make_engine()


# --- Celery workers, as real processes -------------------------------------------------

@pytest.fixture(scope="module")
def worker_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of the module's own (broker, results, storage, locks) for its workers."""
    server = RedisServer(tmp_path_factory.mktemp("worker-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def persisted_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of the module's own that writes what it holds to disk as a production one
    does (an append-only file, and a snapshot on SAVE), uncompressed, so a test can read
    the files' bytes for what they contain."""
    server = RedisServer(tmp_path_factory.mktemp("persisted-redis")).start(
        "--appendonly", "yes", "--appendfsync", "always", "--rdbcompression", "no")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def producer(worker_redis: RedisServer) -> Celery:
    """A producer app talking to `worker_redis`, as a client program would."""
    return create_app(worker_env(worker_redis.url))


#: The module fleet's node names.
WORKER_NODES = ("w1", "w2")
#: Settings of the module fleet that differ from the defaults: a GC budget other than
#: the task's own default, so a test can see which one a GC ran with.
FLEET_SETTINGS = {"SPIRAL_GC_TIME_BUDGET_MS": "5"}


@pytest.fixture(scope="module")
def workers(worker_redis: RedisServer, producer: Celery,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[CeleryProcess]]:
    """Two worker nodes, prefork with two children each, consuming every queue."""
    with running_workers(producer, worker_env(worker_redis.url, **FLEET_SETTINGS),
                         tmp_path_factory.mktemp("workers"), WORKER_NODES) as nodes:
        yield nodes


@pytest.fixture
def idle_workers(workers: list[CeleryProcess], producer: Celery) -> list[CeleryProcess]:
    """The module's workers once everything sent before has been done: a test starts
    with empty queues and idle workers, whatever the one before it left behind (the GC
    tasks its stores enqueued, a redelivered store, a child being replaced)."""
    wait_until_drained(producer, timeout=60, destination=[node_name(n) for n in WORKER_NODES])
    return workers


#: Where a lone worker keeps its data: a database of its own on `worker_redis`, apart
#: from the broker's and the results' (database 0), so a test can digest everything
#: stored without the broker's keys.
STORAGE_DB = 1


@pytest.fixture(scope="module")
def lone_worker_env(worker_redis: RedisServer) -> dict[str, str]:
    """The environment of `lone_worker`: storage in STORAGE_DB, broker and results in
    database 0; no GC triggered by stores (a GC running beside the calls would change
    what a test compares), and every collectable memory due at once (a GC a test sends
    has work)."""
    base = worker_redis.url
    return worker_env(base.rsplit("/", 1)[0] + f"/{STORAGE_DB}", SPIRAL_BROKER_URL=base,
                      SPIRAL_RESULT_BACKEND=base, SPIRAL_GC_TRIGGER_INTERVAL="1000000",
                      SPIRAL_GC_RETENTION_S="0.001")


@pytest.fixture(scope="module")
def lone_worker(lone_worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[Celery, CeleryProcess]]:
    """One worker node (prefork, two children) for a whole module, and a producer app
    talking to it."""
    app = create_app(lone_worker_env)
    with running_workers(app, lone_worker_env, tmp_path_factory.mktemp("lone"),
                         ["lone"]) as nodes:
        yield app, nodes[0]


# --- Flower, started as workers/flower.sh starts it ------------------------------------

@pytest.fixture(scope="module")
def flower(worker_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Flower]:
    """Flower on the module's Redis (FLOWER_BASIC_AUTH=tests.scripts.USERS), answering
    HTTP; started before any worker, as an operator may."""
    with running_flower(worker_env(worker_redis.url), tmp_path_factory.mktemp("flower")
                        ) as process:
        yield process
