"""Flower, started as workers/flower.sh starts it (`--enable_events=True`, basic auth
from FLOWER_BASIC_AUTH), watching real workers of both deployments.

Workers send no task events by default (README, "Task events"): Flower switches them
on itself, by broadcasting `enable_events`, and what it shows comes from those events,
from remote control (inspect) and, on Redis, from the queues' lengths read off the
broker.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from celery import Celery
from celery.result import AsyncResult

from spiral_tasks.tasks.app import create_app
from spiral_tasks.tasks.config import DEFAULT_QUEUE, MAINTENANCE_QUEUE
from spiral_tasks.testing.celery_worker import node_name, running_workers, worker_env
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until
from tests.scripts import OPS, SCRIPT, USERS, VIEWER, Flower, healthcheck, running_flower
from tests.scripts import script_env as with_scripts
from tests.tasks.test_embedded import start_embedded

WAIT = 60
TENANT = "flower"
#: The tenant of the tasks sent once Flower has switched task events on.
WATCHED = "flower-watched"


#: Tasks sent, by id: (task name, result).
Sent = dict[str, tuple[str, AsyncResult]]


def send(producer: Celery, sent: Sent, name: str, **kwargs: object) -> AsyncResult:
    result = producer.send_task(name, kwargs=kwargs)
    sent[result.id] = (name, result)
    return result


def send_stores_and_gc(producer: Celery, tenant: str = TENANT) -> Sent:
    """Three stores and a GC: both queues."""
    sent: Sent = {}
    for n in range(3):
        send(producer, sent, "spiral.store_memory", content=f"memory {n}", tenant=tenant)
    send(producer, sent, "spiral.gc", tenant=tenant)
    return sent


def finish(producer: Celery, sent: Sent, tenant: str = TENANT) -> None:
    """Wait for every answer, then ask for the tenant's stats (sent last, so they count
    every store) and check them."""
    for _, result in sent.values():
        result.get(timeout=WAIT)
    stats = send(producer, sent, "spiral.stats", tenant=tenant).get(timeout=WAIT)
    assert stats["consistent"]
    assert stats["total_memories"] == 3


def wait_for_task_events(flower: Flower, producer: Celery) -> None:
    """Until Flower has switched the workers' task events on (its `enable_events`
    broadcast, every 5 s): a no-op is sent each time until Flower lists one succeeded."""

    def seen() -> bool:
        result = producer.send_task("spiral.noop")
        result.get(timeout=WAIT)
        return task_states(flower).get(result.id) == ("spiral.noop", "SUCCESS")

    wait_until(seen, WAIT, interval=0.5, message="Flower to switch task events on")


def watch_stores_and_gc(flower: Flower, producer: Celery) -> None:
    """Once Flower gets task events: stores and a GC, each listed by Flower, succeeded."""
    wait_for_task_events(flower, producer)
    sent = send_stores_and_gc(producer, WATCHED)
    finish(producer, sent, WATCHED)
    wait_for_tasks(flower, sent)


def task_states(flower: Flower) -> dict[str, tuple[str, str]]:
    """Flower's tasks: id -> (name, state)."""
    return {uuid: (task["name"], task["state"])
            for uuid, task in flower.api("/api/tasks").items()}


def queue_lengths(flower: Flower) -> dict[str, int]:
    return {queue["name"]: queue["messages"]
            for queue in flower.api("/api/queues/length")["active_queues"]}


def wait_for_tasks(flower: Flower, sent: Sent) -> None:
    """Until Flower lists every task `sent` by name, succeeded."""
    wanted = {uuid: (name, "SUCCESS") for uuid, (name, _) in sent.items()}
    wait_until(lambda: wanted.items() <= task_states(flower).items(), WAIT, interval=0.2,
               message=lambda: f"Flower to list {wanted} (it has {task_states(flower)})")


def wait_for_status(flower: Flower, node: str, online: bool) -> None:
    """Until Flower's event state says `node` is online (or offline)."""
    wait_until(lambda: flower.api("/api/workers?status=true").get(node) is online, WAIT,
               interval=0.2, message=f"Flower to show {node} {'on' if online else 'off'}line")


@pytest.mark.parametrize("path", ["/api/workers", "/api/tasks", "/api/queues/length",
                                  "/api/task/types", "/", "/broker"])
def test_the_api_and_the_pages_answer_401_without_auth(flower: Flower, path: str) -> None:
    assert flower.get(path, credentials=None).status == 401
    assert flower.get(path, credentials="ops:wrong").status == 401
    assert flower.get(path, credentials=OPS).status == 200
    assert flower.get(path, credentials=VIEWER).status == 200


def test_flower_shows_the_queues_the_worker_and_the_spiral_tasks(
        flower: Flower, worker_redis: RedisServer, producer: Celery, tmp_path: Path) -> None:
    # Sent before any worker runs, so they wait in the queues, and Flower sees them
    # there (read off Redis: the broker view).
    sent = send_stores_and_gc(producer)
    wait_until(lambda: queue_lengths(flower) == {DEFAULT_QUEUE: 3, MAINTENANCE_QUEUE: 1},
               WAIT, interval=0.2, message="Flower to show 3 + 1 messages queued")
    broker_page = flower.get("/broker")
    assert broker_page.status == 200
    assert MAINTENANCE_QUEUE in broker_page.body

    node = node_name("flw1")
    with running_workers(producer, worker_env(worker_redis.url), tmp_path, ["flw1"]):
        finish(producer, sent)
        wait_for_status(flower, node, online=True)
        watch_stores_and_gc(flower, producer)
        wait_until(lambda: queue_lengths(flower) == {DEFAULT_QUEUE: 0, MAINTENANCE_QUEUE: 0},
                   WAIT, interval=0.2, message="Flower to show the queues empty")
        inspected = flower.api("/api/workers?refresh=true")[node]
        assert {queue["name"] for queue in inspected["active_queues"]} == {
            DEFAULT_QUEUE, MAINTENANCE_QUEUE}
    wait_for_status(flower, node, online=False)


@pytest.mark.parametrize(("users", "healthy"), [(USERS, True), (VIEWER, True),
                                                ("ops:wrong", False)])
def test_the_flower_healthcheck_passes_with_its_credentials_only(
        flower: Flower, tmp_path: Path, users: str, healthy: bool) -> None:
    env = with_scripts(worker_env(None), FLOWER_BASIC_AUTH=users)
    checked = healthcheck(env, tmp_path, "flower", str(flower.port))
    assert (checked.returncode, checked.stderr.strip()) == (
        (0, "") if healthy else (1, "unhealthy: flower: its API answered 401 Unauthorized"))


@pytest.mark.parametrize("users", ["", "ops", "ops:secret,viewer", ":secret"])
def test_flower_refuses_to_start_without_auth(users: str, tmp_path: Path) -> None:
    env = with_scripts(worker_env(None), FLOWER_BASIC_AUTH=users)
    started = subprocess.run([str(SCRIPT)], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=30, check=False)
    assert started.returncode == 2
    assert started.stderr.splitlines() == [
        "flower.sh: Flower requires auth: set FLOWER_BASIC_AUTH=user:password"
        "[,user2:password2]"]


def embedded_queue_lengths(embedded_dir: Path) -> dict[str, int]:
    """Queue lengths as the README says to count them on the embedded broker (its
    query, run with the standard library's sqlite3 rather than the sqlite3 shell)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    query = re.search(r'sqlite3 spiral-embedded/broker.sqlite3 "([^"]+)"', readme)
    assert query is not None
    with closing(sqlite3.connect(embedded_dir / "broker.sqlite3")) as broker:
        return {queue: n for queue, n in broker.execute(query.group(1))
                if queue in {DEFAULT_QUEUE, MAINTENANCE_QUEUE}}


def test_flower_watches_the_embedded_deployment_but_not_its_queues(tmp_path: Path) -> None:
    """Events (SQLite fanout) and inspect work on the embedded broker; Flower reads
    queue lengths only from Redis and RabbitMQ, so there it answers 404, and the
    README's query counts them instead."""
    env = worker_env(None, SPIRAL_EMBEDDED_DIR=str(tmp_path / "spiral-embedded"),
                     SPIRAL_DB_PATH=str(tmp_path / "spiraldb"))
    with running_flower(env, tmp_path / "flower") as flower:
        producer = create_app(env)
        sent = send_stores_and_gc(producer)
        assert embedded_queue_lengths(tmp_path / "spiral-embedded") == {
            DEFAULT_QUEUE: 3, MAINTENANCE_QUEUE: 1}
        worker = start_embedded(env, tmp_path)
        try:
            finish(producer, sent)
            node = node_name("embedded")
            wait_for_status(flower, node, online=True)
            watch_stores_and_gc(flower, producer)
            assert node in flower.api("/api/workers?refresh=true")
            queues = flower.get("/api/queues/length")
        finally:
            worker.stop()
    assert (queues.status, queues.body) == (404, "'sqlite' broker is not supported")
