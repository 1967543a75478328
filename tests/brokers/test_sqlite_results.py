"""The SQLite result backend, with real writer processes (spawned)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

from celery import Celery

from spiral_tasks.brokers.sqlite_results import SQLiteBackend
from spiral_tasks.brokers.urls import sqlite_url
from spiral_tasks.testing.waiting import wait_until

SPAWN = multiprocessing.get_context("spawn")
WRITERS, RESULTS_EACH = 2, 12


def task_ids(writer: int) -> list[str]:
    return [f"task-{writer}-{n}" for n in range(RESULTS_EACH)]


def backend(folder: Path, expires_s: int = 3600) -> SQLiteBackend:
    app = Celery("results-test", set_as_current=False)
    app.conf.result_expires = expires_s
    return SQLiteBackend(app=app, url=sqlite_url(folder / "results.sqlite3"))


def write_results(folder: str, writer: int) -> None:
    """1 MiB results that carry their own SHA-256, one after the other."""
    results = backend(Path(folder))
    for task_id in task_ids(writer):
        content = os.urandom(512 * 1024).hex()
        results.store_result(task_id, {
            "task_id": task_id, "content": content,
            "sha256": hashlib.sha256(content.encode()).hexdigest()}, "SUCCESS")


def test_a_reader_polling_during_writes_never_sees_a_partial_result(tmp_path: Path) -> None:
    results = backend(tmp_path)
    writers = [SPAWN.Process(target=write_results, args=(str(tmp_path), w))
               for w in range(WRITERS)]
    for writer in writers:
        writer.start()
    everything = [t for w in range(WRITERS) for t in task_ids(w)]
    seen_while_writing: set[str] = set()

    def check_all() -> set[str]:
        """Every result there now, each one checked whole."""
        found = set()
        for task_id in everything:
            meta = results.get_task_meta(task_id, cache=False)
            if meta["status"] != "PENDING":
                value = meta["result"]
                assert value["task_id"] == task_id
                assert hashlib.sha256(value["content"].encode()).hexdigest() == value["sha256"]
                found.add(task_id)
        return found

    while any(w.is_alive() for w in writers):
        seen_while_writing |= check_all()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    assert seen_while_writing, "the reader never overlapped the writers"
    assert check_all() == set(everything)


def test_results_expire_and_are_cleaned_up(tmp_path: Path) -> None:
    results = backend(tmp_path, expires_s=1)
    results.store_result("gone", 42, "SUCCESS")
    assert results.get_task_meta("gone", cache=False)["result"] == 42
    wait_until(lambda: results.get_task_meta("gone", cache=False)["status"] == "PENDING",
               10, message="the result to expire")
    assert results.size() == 1  # expired, invisible, not yet deleted
    results.cleanup()
    assert results.size() == 0


def test_many_results_at_once_and_chord_counters(tmp_path: Path) -> None:
    results = backend(tmp_path)
    ids = [f"id-{n}" for n in range(1200)]  # more than one batch of parameters
    for n, task_id in enumerate(ids):
        results.set(results.get_key_for_task(task_id), str(n).encode())
    values = results.mget([results.get_key_for_task(t) for t in [*ids, "missing"]])
    assert values == [str(n).encode() for n in range(1200)] + [None]
    assert [results.incr(b"counter") for _ in range(3)] == [1, 2, 3]
