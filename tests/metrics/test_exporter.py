"""A real worker node's /metrics, scraped after real tasks: the samples of both prefork
children add up, every family the runbook's alerts use moves when it should, and a
second node given the same port or folder is refused with one line.

The node runs `celery -A spiral_tasks worker` as the README documents it, with Flower
installed (its command imports prometheus_client before our code runs) and without
PROMETHEUS_MULTIPROC_DIR set beforehand, as a user would start it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from spiral_tasks.keys import TenantKeys
from spiral_tasks.metrics.folder import default_folder
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    child_pids,
    running_workers,
    start_worker,
    worker_env,
)
from spiral_tasks.testing.redis_server import RedisServer, free_port
from spiral_tasks.testing.waiting import wait_until
from tests.metrics.scrape import scrape, value

NODE = "metered"
STORES = "spiral_store_duration_seconds_count"


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def node(worker_redis: RedisServer, producer: Celery, port: int,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryProcess]:
    env = worker_env(worker_redis.url, METRICS_PORT=str(port))
    with running_workers(producer, env, tmp_path_factory.mktemp("metered"), [NODE]) as nodes:
        yield nodes[0]


def store(producer: Celery, tenant: str, count: int) -> list[str]:
    results = [producer.send_task("spiral.store_memory", args=[f"m{n}"],
                                  kwargs={"tenant": tenant}) for n in range(count)]
    return [r.get(timeout=60)["id"] for r in results]


def test_the_store_histogram_counts_every_store_of_both_children(
        node: CeleryProcess, producer: Celery, port: int) -> None:
    before = value(scrape(port), STORES, outcome="ok")
    folder = default_folder(port)
    children = child_pids(node.pid)
    assert len(children) == 2
    sent = 0

    def both_children_stored() -> bool:
        nonlocal sent
        sent += len(store(producer, "both", 10))
        return all((folder / f"histogram_{pid}.db").exists() for pid in children)

    wait_until(both_children_stored, 120, interval=0,
               message=lambda: f"both children {children} to serve stores ({sent} sent)")
    text = scrape(port)
    assert value(text, STORES, outcome="ok") - before == sent
    assert value(text, "spiral_memories", tenant="both") == sent


def test_retrieve_and_collect_are_timed(node: CeleryProcess, producer: Celery,
                                        port: int) -> None:
    before = scrape(port)
    [memory_id] = store(producer, "timed", 1)
    producer.send_task("spiral.retrieve_memory", args=[memory_id],
                       kwargs={"tenant": "timed"}).get(timeout=60)
    producer.send_task("spiral.collect_memory", args=[memory_id],
                       kwargs={"tenant": "timed"}).get(timeout=60)
    after = scrape(port)
    for operation in ("retrieve", "collect"):
        name = f"spiral_{operation}_duration_seconds_count"
        assert value(after, name, outcome="ok") == value(before, name, outcome="ok") + 1


def test_drift_shows_in_the_invariant_gauge_and_rebuild_corrections(
        node: CeleryProcess, producer: Celery, worker_redis: RedisServer, port: int) -> None:
    store(producer, "drifted", 3)
    producer.send_task("spiral.stats", kwargs={"tenant": "drifted"}).get(timeout=60)
    assert value(scrape(port), "spiral_invariant_holds", tenant="drifted") == 1
    client = redis.Redis.from_url(worker_redis.url)
    client.incrby(TenantKeys("drifted").memory_count, 5)  # a hand edit
    client.close()
    stats = producer.send_task("spiral.stats", kwargs={"tenant": "drifted"}).get(timeout=60)
    assert not stats["consistent"]
    text = scrape(port)
    assert value(text, "spiral_invariant_holds", tenant="drifted") == 0
    corrected = value(text, "spiral_rebuild_corrections_total", kind="counter")

    producer.send_task("spiral.rebuild_stats", kwargs={"tenant": "drifted"}).get(timeout=60)
    producer.send_task("spiral.stats", kwargs={"tenant": "drifted"}).get(timeout=60)
    text = scrape(port)
    assert value(text, "spiral_rebuild_corrections_total", kind="counter") == corrected + 1
    assert value(text, "spiral_invariant_holds", tenant="drifted") == 1
    assert value(text, "spiral_memories", tenant="drifted") == 3


def test_gc_runs_are_pauses(node: CeleryProcess, producer: Celery, port: int) -> None:
    before = value(scrape(port), "spiral_gc_pause_seconds_count")
    producer.send_task("spiral.gc", kwargs={"tenant": "drifted"}).get(timeout=60)
    assert value(scrape(port), "spiral_gc_pause_seconds_count") == before + 1


def test_a_busy_lock_times_out_and_the_retry_is_counted(
        node: CeleryProcess, producer: Celery, worker_redis: RedisServer, port: int) -> None:
    """Someone holds the tenant's lock past the section's 2 s wait: the store gives up
    (LockTimeout), is retried, and lands once the holder's lock expires."""
    before = scrape(port)
    client = redis.Redis.from_url(worker_redis.url)
    client.set(TenantKeys("busy").lock, "someone-else", px=2500)
    client.close()
    assert store(producer, "busy", 1)
    after = scrape(port)
    assert value(after, "spiral_lock_timeouts_total") > value(before, "spiral_lock_timeouts_total")
    retries = {"task": "spiral.store_memory", "cause": "LockTimeout"}
    assert value(after, "spiral_task_retries_total", **retries) > \
        value(before, "spiral_task_retries_total", **retries)


def refused(env: dict[str, str], tmp_path: Path, name: str) -> str:
    """A second node, started and expected to stop on its own: what it printed."""
    second = start_worker(env, tmp_path, name)
    assert second.process is not None
    try:
        code = second.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        second.stop()
        raise AssertionError(f"the second node kept running:\n{second.log()}") from None
    assert code == 1, second.log()
    lines = [line for line in second.log().splitlines() if "cannot serve its metrics" in line]
    assert len(lines) == 1, second.log()
    return lines[0]


def test_a_second_node_on_the_same_port_or_folder_is_refused(
        node: CeleryProcess, worker_redis: RedisServer, port: int, tmp_path: Path) -> None:
    same_port = refused(worker_env(worker_redis.url, METRICS_PORT=str(port)), tmp_path,
                        "same-port")
    assert f"METRICS_PORT {port} is in use" in same_port
    same_folder = refused(worker_env(worker_redis.url, METRICS_PORT=str(free_port()),
                                     PROMETHEUS_MULTIPROC_DIR=str(default_folder(port))),
                          tmp_path, "same-folder")
    assert "is used by another running worker node" in same_folder
    # The first node was not disturbed.
    assert "# TYPE spiral_store_duration_seconds histogram" in scrape(port)
