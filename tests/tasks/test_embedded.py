"""The embedded default: no server at all, LevelDB storage, beat inside the worker,
the SQLite broker and results (spiral_tasks/brokers/)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from spiral_tasks.brokers.store import MessageStore
from spiral_tasks.storage.level import LevelStorage
from spiral_tasks.tasks.app import create_app
from spiral_tasks.tasks.config import DEFAULT_QUEUE, MAINTENANCE_QUEUE
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    child_pids,
    process_state,
    start_worker,
    wait_for_workers,
    worker_env,
)
from spiral_tasks.testing.engines import engine_over
from spiral_tasks.testing.redis_server import free_port
from spiral_tasks.testing.waiting import wait_until
from tests.invariants import assert_consistent
from tests.metrics.scrape import scrape, value

TENANT = "bulk"
BURST = 500
PRODUCERS = 3
#: Bursts each producer sends: ten each, 15,000 stores in all (33 s on the shared
#: 2-core machine at a load average of 7).
BURSTS_EACH = 10
#: No store is evicted, so the stored count must equal the stores sent exactly.
ROOMY = {"SPIRAL_MAX_MEMORY_NODES": "100000"}


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The embedded deployment in `tmp_path`, beat sending GC every second."""
    return worker_env(None, SPIRAL_EMBEDDED_DIR=str(tmp_path / "spiral-embedded"),
                      SPIRAL_DB_PATH=str(tmp_path / "spiraldb"), SPIRAL_GC_EVERY_S="1",
                      **extra)


def start_embedded(env: dict[str, str], tmp_path: Path, name: str = "embedded"
                   ) -> CeleryProcess:
    """`celery -A spiral_tasks worker --beat --pool threads --concurrency 4`, as
    workers/embedded.sh runs it, answering pings."""
    worker = start_worker(env, tmp_path, name, "--beat", pool="threads", concurrency=4)
    wait_for_workers(create_app(env), [name])
    return worker


def broker(tmp_path: Path) -> MessageStore:
    return MessageStore(tmp_path / "spiral-embedded" / "broker.sqlite3")


def send_bursts(env: dict[str, str], producer: int, bursts: int, out: str) -> None:
    """A producer process: bursts of stores, each answered before the next is sent;
    every answer written to `out` as a JSON line."""
    app = create_app(env)
    with Path(out).open("w") as answers:
        for burst in range(bursts):
            sent = [app.send_task("spiral.store_memory", kwargs={
                "content": f"producer {producer} burst {burst} memory {n}",
                "tenant": TENANT}) for n in range(BURST)]
            for result in sent:
                answer = result.get(timeout=180, interval=0.02)
                answers.write(json.dumps({"task_id": result.id, "answer": answer}) + "\n")


def read_answers(paths: list[Path]) -> list[dict[str, object]]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def stored_total(tmp_path: Path) -> int:
    """Open the LevelDB (the worker must be stopped) and check the invariant exactly:
    total memories == sum of spiral node counts == node records in storage."""
    storage = LevelStorage(tmp_path / "spiraldb")
    storage.init()
    try:
        return assert_consistent(engine_over(storage, max_memory_nodes=100000), TENANT)
    finally:
        storage.close()


def assert_task_queues_drained(store: MessageStore) -> None:
    """No store waiting or claimed; maintenance too (beat's GC comes and goes)."""
    wait_until(lambda: all(store.by_queue().get(q, (0, 0)) == (0, 0)
                           for q in (DEFAULT_QUEUE, MAINTENANCE_QUEUE)),
               60, message="the task queues to be empty with nothing claimed")


def assert_nothing_left(store: MessageStore) -> None:
    """After the worker stopped: no claim anywhere, no private queue of a dead
    process, no store; only GC runs beat may have sent as the worker shut down."""
    store.reap()  # as the next process to connect would
    assert store.counts()["claimed"] == 0
    assert store.queue_names() <= {DEFAULT_QUEUE, MAINTENANCE_QUEUE}
    leftover = store.db.rows("SELECT queue, payload FROM messages")
    # A message that names no task is shown whole (one was seen once, after a kill).
    tasks = [(queue, json.loads(payload).get("headers", {}).get("task", payload))
             for queue, payload in leftover]
    assert all(task == (MAINTENANCE_QUEUE, "spiral.gc") for task in tasks), tasks


@pytest.mark.timeout(300)
def test_bursts_from_three_producers_while_beat_sends_gc(tmp_path: Path) -> None:
    """The issue's test: the worker survives, every store is answered exactly once,
    the invariant is exact and the broker is left empty."""
    env = embedded_env(tmp_path, **ROOMY)
    worker = start_embedded(env, tmp_path)
    pid = worker.pid
    outputs = [tmp_path / f"answers-{p}.jsonl" for p in range(PRODUCERS)]
    try:
        context = multiprocessing.get_context("spawn")
        producers = [context.Process(target=send_bursts,
                                     args=(env, p, BURSTS_EACH, str(outputs[p])))
                     for p in range(PRODUCERS)]
        for producer in producers:
            producer.start()
        for producer in producers:
            producer.join(timeout=240)
            assert producer.exitcode == 0, f"a producer exited with {producer.exitcode}"
        assert worker.process is not None
        assert worker.process.poll() is None, "the worker died"
        assert worker.pid == pid
        assert "Sending due task spiral-gc" in worker.log()
        assert_task_queues_drained(broker(tmp_path))
    finally:
        worker.stop()
    log = worker.log()
    assert "Unrecoverable error" not in log
    assert "CRITICAL" not in log
    answers = read_answers(outputs)
    sent = PRODUCERS * BURSTS_EACH * BURST
    assert len(answers) == sent
    assert len({a["task_id"] for a in answers}) == sent
    assert all(a["answer"]["id"] == a["task_id"] and a["answer"]["created"] is True
               for a in answers)  # type: ignore[index]
    assert stored_total(tmp_path) == sent
    assert_nothing_left(broker(tmp_path))


def frozen_holding_claims(pid: int, store: MessageStore) -> bool:
    """Stop `pid` (SIGSTOP); True if it holds claimed messages now, else let it go on."""
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: process_state(pid) == "T", 10, interval=0.001,
               message=f"process {pid} to be stopped")
    if store.by_queue().get(DEFAULT_QUEUE, (0, 0))[1] > 0:
        return True
    os.kill(pid, signal.SIGCONT)
    return False


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_burst_and_restarted_loses_no_store(tmp_path: Path) -> None:
    """SIGKILL while stores are claimed: the restarted worker gets them again (late
    acks), and each is answered; redelivered stores find what they wrote."""
    env = embedded_env(tmp_path, **ROOMY)
    worker = start_embedded(env, tmp_path, "first")
    app = create_app(env)
    store = broker(tmp_path)
    sent = [app.send_task("spiral.store_memory", kwargs={
        "content": f"memory {n}", "tenant": TENANT}) for n in range(BURST)]
    try:
        wait_until(lambda: store.by_queue().get(DEFAULT_QUEUE, (BURST, 0))[0] < BURST // 2,
                   120, message="the worker to be half way through the burst")
        # Kill it while it holds claims: freeze it first, so the claims seen are the
        # ones it dies with (between two tasks it may hold none for a moment).
        wait_until(lambda: frozen_holding_claims(worker.pid, store), 120, interval=0.01,
                   message="the worker frozen while it holds claims")
        # The worker and its embedded beat (a child process, which would otherwise
        # live on as an orphan sending GC), as a supervisor stopping it would.
        for pid in [worker.pid, *child_pids(worker.pid)]:
            os.kill(pid, signal.SIGKILL)
        assert worker.process is not None
        worker.process.wait(timeout=30)
        worker.process = None
        assert store.by_queue()[DEFAULT_QUEUE][1] > 0, "the kill should leave claims"
        worker = start_embedded(env, tmp_path, "second")
        answers = [result.get(timeout=180, interval=0.02) for result in sent]
        assert_task_queues_drained(store)
    finally:
        worker.stop()
    assert [a["id"] for a in answers] == [r.id for r in sent]
    assert stored_total(tmp_path) == BURST
    assert_nothing_left(store)


def test_embedded_worker_stores_and_rebuilds(tmp_path: Path) -> None:
    metrics_port = free_port()
    env = embedded_env(tmp_path, METRICS_PORT=str(metrics_port))
    worker = start_embedded(env, tmp_path)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "spiral_tasks.cli.enqueue", "--count", "20", "--rebuild",
             "--stats"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
            check=False)
        assert result.returncode == 0, result.stderr
        answers = [json.loads(line) for line in result.stdout.splitlines()]
        stores = [a["result"] for a in answers if a["task"] == "spiral.store_memory"]
        assert [s["created"] for s in stores] == [True] * 20
        stats = answers[-1]["result"]
        assert stats["consistent"] is True
        assert stats["total_memories"] == 20
        # Its threads' samples are served like a prefork node's.
        text = scrape(metrics_port)
        assert value(text, "spiral_store_duration_seconds_count", outcome="ok") == 20
        assert value(text, "spiral_invariant_holds", tenant="default") == 1
        # The worker holds the LevelDB: the demo finds it and sends its work through it.
        demo = subprocess.run([sys.executable, "-m", "spiral_tasks.cli.demo", "--count", "5"],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert demo.returncode == 0, demo.stderr
        assert "worker: found embedded@" in demo.stdout
        assert "found existing data" not in demo.stdout  # the demo's own tenant is new
        assert worker.process is not None
        assert worker.process.poll() is None  # left running
        wait_until(lambda: "Sending due task spiral-gc" in worker.log(), 20,
                   message="the embedded beat to send GC")
    finally:
        worker.stop()


def test_enqueue_without_a_worker_says_the_stores_stay_queued(tmp_path: Path) -> None:
    env = worker_env(None, SPIRAL_EMBEDDED_DIR=str(tmp_path / "spiral-embedded"))
    result = subprocess.run(
        [sys.executable, "-m", "spiral_tasks.cli.enqueue", "--count", "2", "--timeout", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3
    assert "no worker answered" in result.stderr
    assert "stay queued for the next worker" in result.stderr
    assert broker(tmp_path).by_queue()[DEFAULT_QUEUE] == (2, 0)  # queued, unclaimed


def test_a_second_embedded_worker_on_the_same_folder_refuses_to_start(
        tmp_path: Path) -> None:
    """LevelDB admits one process: a second worker must stop before it answers a ping
    or takes a message, saying why, not serve and fail every task it takes."""
    env = embedded_env(tmp_path)
    first = start_embedded(env, tmp_path, "first")
    try:
        second = start_worker(env, tmp_path, "second", "--beat", pool="threads",
                              concurrency=4)
        assert second.process is not None
        assert second.process.wait(timeout=120) == 1
        assert "LevelDB admits one process at a time" in second.log()
        assert "b'" not in second.log()
        assert [n.split("@")[0] for n in running(create_app(env))] == ["first"]
    finally:
        first.stop()


def running(app: Celery) -> list[str]:
    return sorted(name for reply in app.control.ping(timeout=1) or [] for name in reply)
