"""The manifests' containers and probes, run for real on this host against a private
Redis: the worker's probe passes for its own node and fails when that node hangs,
beat's passes while a beat holds the schedule, Flower's answers without the password
the rest of Flower asks for, and Redis accepts the arguments the StatefulSet gives it."""

from __future__ import annotations

import base64
import itertools
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import process_state
from spiral_tasks.testing.redis_server import RedisServer, free_port
from spiral_tasks.testing.waiting import wait_until
from tests.ops.manifests import container, find
from tests.ops.pods import ContainerProcess, Pod, describe, running

FLOWER_AUTH = "ops:not-the-real-password"


def secrets(redis_url: str) -> dict[str, dict[str, str]]:
    """What the runbook's `kubectl create secret` commands hold, for this test."""
    return {"spiral-secrets": {"REDIS_URL": redis_url, "SPIRAL_SIGIL_SECRET": "test"},
            "spiral-flower": {"FLOWER_BASIC_AUTH": FLOWER_AUTH}}


def test_worker_probe_pings_its_own_node_and_fails_when_it_hangs(
        redis_url: str, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"  # the pod's emptyDir
    metrics.mkdir()
    metrics_port = free_port()
    pod = Pod("Deployment", "spiral-worker", "spiral-worker-5d8f9c-x7k2p",
              secrets(redis_url), overrides={"METRICS_PORT": str(metrics_port),
                                             "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
              ports={9099: metrics_port})
    assert pod.argv[-2:] == ["-n", "w@spiral-worker-5d8f9c-x7k2p"]
    with running(pod, tmp_path) as node:
        # Each probe that gets no reply takes its full --timeout: wait for the node to
        # be up before the first one.
        wait_until(lambda: "ready." in node.log(), 90, interval=0.2,
                   message=lambda: describe(node))
        wait_until(pod.probe, 60, interval=1, message=lambda: describe(node))
        # Another pod's probe does not count this node, up and answering meanwhile:
        # each pod answers for itself. That probe waits its full timeout for nothing,
        # so it runs while the node works for the scrape.
        with ThreadPoolExecutor(1) as other_pod:
            others_probe = other_pod.submit(
                pod.probe, env={"POD_NAME": "spiral-worker-5d8f9c-other"})
            scrape_as_annotated(pod, node, redis_url)
            assert not others_probe.result()
        # A node whose main process hangs (here: stopped) fails its probe.
        os.kill(node.pid, signal.SIGSTOP)
        wait_until(lambda: process_state(node.pid) == "T", 10, message="the node stopped")
        assert not pod.probe()


def scrape_as_annotated(pod: Pod, node: ContainerProcess, redis_url: str) -> None:
    """Once the node has done some work, Prometheus finds its metrics where the pod's
    annotations say."""
    producer = create_app({"REDIS_URL": redis_url})
    try:
        producer.send_task("spiral.store_memory", args=["scraped"]).get(timeout=30)
    finally:
        producer.close()
    annotations = find("Deployment", "spiral-worker").body["spec"]["template"][
        "metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    path, port = annotations["prometheus.io/path"], int(annotations["prometheus.io/port"])

    def scraped() -> str:
        status, body = pod.http_get(path, port)
        return body if status == 200 and "spiral_store_duration_seconds" in body else ""

    wait_until(scraped, 30, interval=0.5, message=lambda: describe(node))


def test_beat_probe_passes_while_a_beat_holds_the_schedule(
        redis_url: str, tmp_path: Path) -> None:
    pod = Pod("Deployment", "spiral-beat", "spiral-beat-7c4d-q9w", secrets(redis_url))
    assert not pod.probe()  # no beat yet
    with running(pod, tmp_path) as beat:
        wait_until(pod.probe, 60, interval=0.5, message=lambda: describe(beat))
    # Stopped cleanly, the beat released its lock: nothing schedules any more.
    assert not pod.probe()


def test_flower_probe_needs_no_password_but_flower_does(
        redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    pod = Pod("Deployment", "spiral-flower", "spiral-flower-6b7f-m2c", secrets(redis_url),
              overrides={"FLOWER_PORT": str(port)}, ports={5555: port})
    with running(pod, tmp_path) as flower:
        wait_until(lambda: pod.probe("readinessProbe"), 60, interval=0.5,
                   message=lambda: describe(flower))
        assert pod.probe("livenessProbe")
        assert pod.http_get("/", "http")[0] == 401
        token = base64.b64encode(FLOWER_AUTH.encode()).decode()
        assert pod.http_get("/", "http",
                            headers={"Authorization": f"Basic {token}"})[0] == 200


def test_redis_accepts_the_statefulsets_arguments(tmp_path: Path) -> None:
    command = container("StatefulSet", "spiral-redis")["command"]
    assert command[0] == "redis-server"
    # The pod's volume is a folder here, and the port one of this host's free ones.
    arguments = [str(tmp_path) if previous == "--dir" else word
                 for previous, word in itertools.pairwise(command)]
    server = RedisServer(tmp_path).start(*arguments)
    try:
        client = redis.Redis(port=server.port, decode_responses=True)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("dir") == {"dir": str(tmp_path)}
        client.close()
    finally:
        server.stop()
