"""workers/healthcheck.py, the compose file's health checks, against a real worker and
a real Redis (Flower's check is in test_flower.py, with Flower)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    node_name,
    process_state,
    running_workers,
    worker_env,
)
from spiral_tasks.testing.redis_server import RedisServer, free_port
from spiral_tasks.testing.waiting import wait_until
from tests.scripts import healthcheck

#: As docker-compose names a worker node: %h is expanded by the check, as by celery.
NODE = "hc1"


@pytest.fixture(scope="module")
def worker(worker_redis: RedisServer, producer: Celery,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryProcess]:
    with running_workers(producer, worker_env(worker_redis.url),
                         tmp_path_factory.mktemp("hc-worker"), [NODE]) as (node,):
        yield node


def test_a_worker_that_answers_is_healthy(worker: CeleryProcess, worker_redis: RedisServer,
                                          tmp_path: Path) -> None:
    checked = healthcheck(worker_env(worker_redis.url), tmp_path, "worker", f"{NODE}@%h")
    assert (checked.returncode, checked.stderr) == (0, "")


def test_a_node_that_does_not_run_is_not(worker: CeleryProcess, worker_redis: RedisServer,
                                         tmp_path: Path) -> None:
    checked = healthcheck(worker_env(worker_redis.url), tmp_path, "worker", "nobody@%h")
    assert checked.returncode == 1
    assert checked.stderr.strip() == (f"unhealthy: worker {node_name('nobody')} did not "
                                      "answer a ping within 5 s")


def test_a_hung_worker_is_unhealthy_until_it_resumes(
        worker: CeleryProcess, worker_redis: RedisServer, tmp_path: Path) -> None:
    env = worker_env(worker_redis.url)
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: process_state(worker.pid) == "T", 10, message="the worker stopped")
        assert healthcheck(env, tmp_path, "worker", f"{NODE}@%h").returncode == 1
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert healthcheck(env, tmp_path, "worker", f"{NODE}@%h").returncode == 0


def test_a_worker_without_its_broker_is_unhealthy(tmp_path: Path) -> None:
    checked = healthcheck(worker_env(f"redis://127.0.0.1:{free_port()}/0"), tmp_path,
                          "worker", f"{NODE}@%h")
    assert checked.returncode == 1
    assert checked.stderr.startswith(f"unhealthy: worker {node_name(NODE)}: the broker "
                                     "does not answer:")


def test_beat_is_healthy_while_redis_answers(worker_redis: RedisServer,
                                             tmp_path: Path) -> None:
    assert healthcheck(worker_env(worker_redis.url), tmp_path, "beat").returncode == 0
    checked = healthcheck(worker_env(f"redis://127.0.0.1:{free_port()}/0"), tmp_path, "beat")
    assert checked.returncode == 1
    assert checked.stderr.startswith("unhealthy: beat: Redis does not answer:")


@pytest.mark.parametrize("args", [[], ["worker"], ["beat", "extra"], ["flower", "1", "2"],
                                  ["scheduler"]])
def test_wrong_arguments_are_a_usage_error(args: list[str], tmp_path: Path) -> None:
    checked = healthcheck(worker_env("redis://127.0.0.1:1/0"), tmp_path, *args)
    assert (checked.returncode, checked.stderr.strip()) == (
        2, "usage: healthcheck.py worker NODE | beat | flower [PORT]")
