"""docker-compose.yml brought up for real, with the locally built images: every service
comes up (healthy where it declares a healthcheck), stores sent from this machine reach
both workers, Flower lists them, each serves /metrics, a crashed worker is restarted
and the run's invariant stays exact, and `down -v` leaves nothing.

The compose file is used as it is, with an override (written per run) that only says
what differs here: Redis is the locally built image, published on the loopback for
this process, and the workers' visibility timeout is short, so what a crashed worker
held comes back within the test rather than within the hour.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import redis
import yaml
from celery import Celery
from docker.models.containers import Container

from spiral_tasks.config import Settings
from spiral_tasks.engine import SpiralMemory
from spiral_tasks.factory import open_engine
from spiral_tasks.keys import TenantKeys
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import worker_env
from spiral_tasks.testing.waiting import wait_until
from tests.containers.conftest import PROJECT_IMAGE, REDIS_IMAGE, STORE
from tests.containers.stores import StoreRun, drained
from tests.invariants import assert_consistent

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DECLARED: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
WORKERS = sorted(name for name, service in DECLARED.items()
                 if service.get("command", [""])[0] == "workers/worker.sh")
FLOWER_AUTH = "spiral:compose-tests"
DEFAULT_METRICS_PORT = 9099
#: A crashed worker's messages come back once this has passed, at the next scan a
#: worker makes: the restarted one scans as it starts (which takes longer than this),
#: the others about every 100 s (kombu's restore interval and throttle). The
#: deployment's timeout is an hour.
VISIBILITY_TIMEOUT_S = 1
UP_WAIT = 180
WAIT = 300

pytestmark = pytest.mark.timeout(600)

def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor `docker compose`: install Debian's "
                "docker-compose (.ci/containers does)")


def override() -> dict[str, Any]:
    services: dict[str, Any] = {
        "redis": {"image": REDIS_IMAGE, "ports": ["127.0.0.1::6379"]}}
    for worker in WORKERS:
        services[worker] = {"environment": {
            "SPIRAL_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S)}}
    if "flower" in DECLARED:
        services["flower"] = {"ports": ["127.0.0.1::5555"]}
    return {"services": services}


def logs(container: Container) -> str:
    return bytes(container.logs()).decode(errors="replace")


def is_up(container: Container) -> bool:
    """Running, and healthy if the service declares a healthcheck."""
    container.reload()
    state = container.attrs["State"]
    health = state.get("Health")
    return bool(state["Running"]) and (health is None or health["Status"] == "healthy")


class Compose:
    """One compose project of docker-compose.yml on the engine DOCKER_HOST names."""

    def __init__(self, workdir: Path) -> None:
        self.project = f"spiral-{uuid.uuid4().hex[:8]}"
        extra = workdir / "compose.local.yml"
        extra.write_text(yaml.safe_dump(override()))
        self.command = [*compose_command(), "-p", self.project, "-f", str(COMPOSE_FILE),
                        "-f", str(extra)]
        self.env = {**os.environ, "SPIRAL_SIGIL_SECRET": "compose-tests",
                    "FLOWER_BASIC_AUTH": FLOWER_AUTH}
        self.client = docker.from_env()

    def run(self, *args: str) -> None:
        done = subprocess.run([*self.command, *args], cwd=ROOT, env=self.env, text=True,
                              capture_output=True, timeout=UP_WAIT, check=False)
        assert done.returncode == 0, f"compose {' '.join(args)}:\n{done.stderr[-3000:]}"

    def label(self, service: str | None = None) -> dict[str, list[str]]:
        labels = [f"com.docker.compose.project={self.project}"]
        if service is not None:
            labels.append(f"com.docker.compose.service={service}")
        return {"label": labels}

    def containers(self, service: str | None = None) -> list[Container]:
        found: list[Container] = self.client.containers.list(all=True,
                                                             filters=self.label(service))
        return found

    def container(self, service: str) -> Container:
        [found] = self.containers(service)
        return found

    def published(self, service: str, port: int) -> int:
        container = self.container(service)
        container.reload()
        return int(container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])

    def leftovers(self) -> list[str]:
        """Whatever of the project the engine still has."""
        label = self.label()
        return ([f"container {c.name}" for c in self.containers()]
                + [f"network {n.name}" for n in self.client.networks.list(filters=label)]
                + [f"volume {v.name}" for v in self.client.volumes.list(filters=label)])


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    project = Compose(tmp_path_factory.mktemp("compose"))
    assert project.client.images.get(PROJECT_IMAGE)  # used as built, never rebuilt here
    try:
        project.run("up", "-d", "--no-build")
        wait_until(lambda: len(project.containers()) == len(DECLARED)
                   and all(is_up(c) for c in project.containers()), UP_WAIT, interval=1,
                   message=f"every service of {COMPOSE_FILE.name} to be up")
        yield project
    finally:
        project.run("down", "-v", "--remove-orphans")
        project.client.close()


@pytest.fixture(scope="module")
def redis_url(compose: Compose) -> str:
    return f"redis://127.0.0.1:{compose.published('redis', 6379)}/0"


@pytest.fixture(scope="module")
def producer(redis_url: str) -> Celery:
    """The project's app as a producer on this machine, through the published port."""
    return create_app(worker_env(redis_url))


@pytest.fixture(scope="module")
def storage_view(redis_url: str) -> Iterator[SpiralMemory]:
    engine = open_engine(Settings.from_env({"REDIS_URL": redis_url}))
    yield engine
    engine.close()


def node_names(compose: Compose) -> set[str]:
    """The workers' node names (`-n w1@%h`, %h being the container's host name)."""
    names = set()
    for worker in WORKERS:
        command = DECLARED[worker]["command"]
        name = command[command.index("-n") + 1]
        host = compose.container(worker).attrs["Config"]["Hostname"]
        names.add(name.replace("%h", host))
    return names


def test_every_service_comes_up(compose: Compose) -> None:
    assert {"redis", "beat-1", "beat-2"} <= set(DECLARED)
    assert len(WORKERS) == 2
    for service in DECLARED:
        assert is_up(compose.container(service)), service


def answering(producer: Celery) -> set[str]:
    return {node for reply in producer.control.ping(timeout=2) for node in reply}


def test_stores_sent_from_this_machine_reach_both_workers(
        compose: Compose, producer: Celery, storage_view: SpiralMemory) -> None:
    # Running is not ready (workers declare no healthcheck yet): both answer first.
    wait_until(lambda: answering(producer) == node_names(compose), UP_WAIT, interval=0.5,
               message="both workers to answer a ping")
    before = {w: logs(compose.container(w)).count(f"{STORE}[") for w in WORKERS}
    run = StoreRun(producer, "host", 200)
    assert [a["id"] for a in run.answers(WAIT)] == run.ids
    for worker in WORKERS:
        assert logs(compose.container(worker)).count(f"{STORE}[") > before[worker], worker
    assert assert_consistent(storage_view, "host") == 200


def test_flower_lists_both_workers(compose: Compose) -> None:
    url = f"http://127.0.0.1:{compose.published('flower', 5555)}/api/workers?refresh=1"
    request = urllib.request.Request(url, headers={
        "Authorization": "Basic " + base64.b64encode(FLOWER_AUTH.encode()).decode()})

    def listed() -> set[str]:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return set(json.load(answer))

    wait_until(lambda: node_names(compose) <= listed(), 60, interval=1,
               message="Flower to list both workers")


METRICS = (
    "import os, sys, urllib.request\n"
    f"port = os.environ.get('METRICS_PORT', '{DEFAULT_METRICS_PORT}')\n"
    "url = f'http://127.0.0.1:{port}/metrics'\n"
    "sys.stdout.write(urllib.request.urlopen(url, timeout=10).read().decode())\n")


@pytest.mark.parametrize("worker", WORKERS)
def test_each_worker_serves_metrics(compose: Compose, worker: str) -> None:
    """Inside each container, its node's /metrics counts the stores it ran (the stores
    test above reached both workers)."""
    code, output = compose.container(worker).exec_run(["python", "-c", METRICS])
    text = bytes(output).decode(errors="replace")
    assert code == 0, text
    assert 'spiral_store_duration_seconds_count{outcome="ok"}' in text, text


def restarted(container: Container, ready_before: int) -> bool:
    container.reload()
    return (container.attrs["RestartCount"] >= 1 and bool(container.attrs["State"]["Running"])
            and logs(container).count(" ready.") > ready_before)


def test_a_crashed_worker_is_restarted_and_the_invariant_holds(
        compose: Compose, producer: Celery, storage_view: SpiralMemory,
        redis_url: str) -> None:
    """The worker's main process SIGKILLed from outside (a crash, the OOM killer): its
    restart policy brings it back, and once the producer has resent what was never
    answered (stores.py), every store is there exactly once. (`docker kill` would not
    do: the engine takes it for a deliberate stop, which `unless-stopped` does not
    undo.)"""
    victim = compose.container(WORKERS[0])
    ready_before = logs(victim).count(" ready.")
    seen_before = logs(victim).count(f"{STORE}[")
    run = StoreRun(producer, "crash", 400)
    wait_until(lambda: logs(victim).count(f"{STORE}[") >= seen_before + 40, WAIT,
               interval=0.2, message=f"{WORKERS[0]} to be busy with the stores")
    victim.reload()
    os.kill(victim.attrs["State"]["Pid"], signal.SIGKILL)
    acknowledged = run.answered()
    wait_until(lambda: restarted(victim, ready_before), UP_WAIT, interval=0.5,
               message=f"{WORKERS[0]} to be restarted and ready")
    broker = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: drained(broker), WAIT, interval=0.5,
                   message="every message to be done and acknowledged")
    finally:
        broker.close()
    run.resend_unanswered()
    assert [a["id"] for a in run.answers(WAIT)] == run.ids
    keys = TenantKeys("crash")
    assert all(storage_view.storage.get_many([keys.memory(i) for i in acknowledged]))
    assert assert_consistent(storage_view, "crash") == len(run.ids)


def test_down_leaves_nothing(compose: Compose) -> None:
    compose.run("down", "-v", "--remove-orphans")
    assert compose.leftovers() == []
