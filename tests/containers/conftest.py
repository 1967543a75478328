"""pytest-celery's test setup with the project's image as the worker and Redis as the
broker, the result backend and the storage, in containers of a real Docker engine.

The engine and the images come from `bash .ci/containers` (see the README, "Container
tests"): it starts a Docker engine of its own, builds `spiral-tasks:latest` and
`spiral-redis:bookworm` from Debian's and PyPI's packages, and runs these tests with
DOCKER_HOST set. Without an engine and the images, a plain `pytest` skips them with one
line saying so; in CI (CI=true) that is a failure, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import celery
import docker
import pytest
from celery import Celery
from docker.errors import DockerException, ImageNotFound
from docker.models.images import Image
from pytest_celery import (
    CeleryBackendCluster,
    CeleryBrokerCluster,
    CeleryTestSetup,
    CeleryWorkerContainer,
    RedisContainer,
    RedisTestBackend,
    RedisTestBroker,
)
from pytest_docker_tools import container, fxtr

from spiral_tasks.config import Settings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.factory import open_engine
from spiral_tasks.tasks.config import DEFAULT_QUEUE

#: Built by .ci/containers (the project's Dockerfile on Debian's Python, and Debian's
#: redis-server), both on a Debian bookworm root file system made with debootstrap.
PROJECT_IMAGE = "spiral-tasks:latest"
REDIS_IMAGE = "spiral-redis:bookworm"
STORE = "spiral.store_memory"
HOW_TO_RUN = "run them with `bash .ci/containers` (README, 'Container tests')"
#: Short, so messages a killed worker container held come back within the test; the
#: deployment's default (an hour) is the same mechanism, only slower.
VISIBILITY_TIMEOUT_S = 5


def engine_problem() -> str | None:
    """Why the container tests cannot run here, or None."""
    where = os.environ.get("DOCKER_HOST", "the default socket")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except DockerException as exc:
        return f"no Docker engine at {where} ({type(exc).__name__})"
    try:
        missing = []
        for image in (PROJECT_IMAGE, REDIS_IMAGE):
            try:
                client.images.get(image)
            except ImageNotFound:
                missing.append(image)
    finally:
        client.close()
    if missing:
        return f"the Docker engine at {where} has no image {', '.join(missing)}"
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


PROBLEM = engine_problem()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Without an engine, every container test skips from this one line (so pytest's
    summary shows it once); in CI, where they must run, each fails instead."""
    if PROBLEM is None:
        return
    message = f"container tests: {PROBLEM}; {HOW_TO_RUN}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: they must run)", pytrace=False)
    pytest.skip(message)


class PublishedPorts:
    """Addresses through the ports the engine publishes on this machine's loopback.

    pytest-docker-tools thinks the tests run inside a container whenever /.dockerenv
    exists (it does on this machine, which is no container of this engine), and then
    answers the container's own IP and internal port: 6379, where this machine's own
    Redis listens. The tests always reach a container through its published port.
    """

    ports: Any

    def get_addr(self, port: str) -> tuple[str, int]:
        return "127.0.0.1", self.ports[port][0]


class LocalRedisContainer(PublishedPorts, RedisContainer):
    """pytest-celery's Redis container on the locally built image, published on the
    loopback only."""

    @classmethod
    def image(cls) -> str:
        return REDIS_IMAGE

    @classmethod
    def ports(cls) -> dict[str, tuple[str, None]]:  # type: ignore[override]
        return {"6379/tcp": ("127.0.0.1", None)}

    @property
    def host_url(self) -> str:
        return f"{self.prefix()}127.0.0.1:{self.port}/{self.vhost}"


class SpiralWorkerContainer(PublishedPorts, CeleryWorkerContainer):
    """A worker node of the project's image, started as the deployment starts one
    (workers/worker.sh: prefork, every queue of the app, remote control on)."""

    @classmethod
    def command(cls, *args: str, **kwargs: Any) -> list[str]:
        return ["workers/worker.sh", "--concurrency", "2", "-n", f"{cls.worker_name()}@%h",
                *args]

    @classmethod
    def worker_name(cls) -> str:
        return "spiral"

    @classmethod
    def worker_queue(cls) -> str:
        return DEFAULT_QUEUE

    @classmethod
    def version(cls) -> str:
        return str(celery.__version__)  # the image installs the lock this process runs


class SpiralTestSetup(CeleryTestSetup):
    """The setup's app is a bare producer (pytest-celery's, not the project's): it
    knows the broker, the results and the tasks' queue, and sends tasks by name."""

    @classmethod
    def update_app_config(cls, app: Celery) -> None:
        app.conf.update(task_default_queue=DEFAULT_QUEUE, task_serializer="json",
                        accept_content=["json"], result_accept_content=["json"])


@pytest.fixture
def celery_setup_cls() -> type[CeleryTestSetup]:
    return SpiralTestSetup


@pytest.fixture
def default_redis_broker_cls() -> type[RedisContainer]:
    return LocalRedisContainer


#: pytest-celery's Redis broker container with our wrapper class (its own names
#: RedisContainer outright, whatever default_redis_broker_cls says).
default_redis_broker = container(
    image="{default_redis_broker_image}",
    ports=fxtr("default_redis_broker_ports"),
    environment=fxtr("default_redis_broker_env"),
    network="{default_pytest_celery_network.name}",
    wrapper_class=LocalRedisContainer,
    timeout=60,
    command=fxtr("default_redis_broker_command"),
)


@pytest.fixture
def celery_broker_cluster(celery_redis_broker: RedisTestBroker) -> Iterator[CeleryBrokerCluster]:
    """Redis only (with kombu installed pytest-celery would add RabbitMQ too)."""
    cluster = CeleryBrokerCluster(celery_redis_broker)
    yield cluster
    cluster.teardown()


@pytest.fixture
def celery_backend_cluster(celery_redis_broker: RedisTestBroker) -> Iterator[CeleryBackendCluster]:
    """The broker's Redis holds the results too, as in the deployment (one Redis for
    the broker, the results, the storage and the locks)."""
    cluster = CeleryBackendCluster(RedisTestBackend(celery_redis_broker.container))
    yield cluster
    cluster.teardown()


@pytest.fixture(scope="session")
def celery_base_worker_image(docker_client: docker.DockerClient) -> Image:
    """The project's image, built beforehand by .ci/containers (not by pytest-celery
    from its own Dockerfile, which would need Docker Hub)."""
    return docker_client.images.get(PROJECT_IMAGE)


@pytest.fixture
def default_worker_container_cls() -> type[CeleryWorkerContainer]:
    return SpiralWorkerContainer


@pytest.fixture(scope="session")
def default_worker_container_session_cls() -> type[CeleryWorkerContainer]:
    return SpiralWorkerContainer


@pytest.fixture
def default_worker_env(celery_broker_cluster: CeleryBrokerCluster) -> dict[str, str]:
    """The deployment's settings: REDIS_URL (the Redis container by its name on the
    test network) is the broker, the results, the storage and the locks."""
    return {"REDIS_URL": celery_broker_cluster.config()["urls"][0],
            "SPIRAL_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
            "SPIRAL_SIGIL_SECRET": "container-tests",
            "PYTHONUNBUFFERED": "1"}


#: A worker container, like pytest-celery's own but without its volume at /app (where
#: the image keeps the project) and started with the image's script.
WORKER_CONTAINER: dict[str, Any] = {
    "image": "{celery_base_worker_image.id}",
    "environment": fxtr("default_worker_env"),
    "network": "{default_pytest_celery_network.name}",
    "wrapper_class": SpiralWorkerContainer,
    "timeout": 60,
    "command": fxtr("default_worker_command"),
}
default_worker_container = container(**WORKER_CONTAINER)
#: A second worker node of the same image on the same network and Redis.
second_worker_container = container(**WORKER_CONTAINER)


@pytest.fixture
def storage_view(celery_setup: CeleryTestSetup) -> Iterator[SpiralMemory]:
    """An engine over the setup's Redis, from this process through the published
    port: a direct view of what the workers wrote."""
    url = celery_setup.broker.config()["host_url"]
    engine = open_engine(Settings.from_env({"REDIS_URL": url}))
    yield engine
    engine.close()
