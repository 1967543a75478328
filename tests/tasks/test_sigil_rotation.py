"""Rotating the sigil key under load, with real workers on a Redis of each test's own:
a prober keeps storing memories and opening every sigil it holds through the workers
while the key changes, and not one live memory's sigil is refused at any moment.

- Stored key: `spiral rotate-sigil-secret` (announce, settle, activate, settle,
  re-sign) while two nodes serve.
- Configured key: the operator's rolling restarts of ops/RUNBOOK.md, one node at a
  time (so for a while the two nodes run different settings), then
  `--resign-only`; and once the grace period is over, the old sigils are refused.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery

from spiral_tasks.config import Settings
from spiral_tasks.factory import open_engine
from spiral_tasks.keys import TenantKeys
from spiral_tasks.security.sigils import SigilKey, key_id
from spiral_tasks.tasks.app import create_app
from spiral_tasks.tasks.config import DEFAULT_QUEUE, MAINTENANCE_QUEUE
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    start_worker,
    wait_for_workers,
    worker_env,
)
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until
from tests.cli.programs import json_out, spiral
from tests.invariants import assert_consistent

WAIT = 60
TENANT = "rot"
NODES = ("k1", "k2")
#: How often a worker reads a stored keyring again: short, so the command's two
#: waits are short.
REFRESH = {"SPIRAL_SIGIL_REFRESH_S": "0.5"}


def call(app: Celery, name: str, **kwargs: Any) -> Any:
    return app.send_task(name, kwargs=kwargs).get(timeout=WAIT, interval=0.01)


def own_queue(node: str) -> str:
    """A queue only `node` consumes (besides the usual ones): the prober sends there
    to have every node sign and every node check."""
    return f"only-{node}"


class Prober(threading.Thread):
    """Each round: stores a memory through every node, then has every node open every
    sigil held so far, with a Celery app of its own (result consumers are not shared
    between threads). `refused` lists every live memory's sigil that got null."""

    def __init__(self, env: dict[str, str], held: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.app = create_app(env)
        self.held = dict(held)
        self.refused: list[tuple[str, str]] = []
        self.rounds = 0
        self.failure: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for node in NODES:
                    stored = self.app.send_task(
                        "spiral.store_memory", queue=own_queue(node),
                        kwargs={"content": f"probe {self.rounds}", "tenant": TENANT},
                    ).get(timeout=WAIT, interval=0.01)
                    self.held[stored["sigil"]] = stored["id"]
                pending = [(sigil, self.app.send_task(
                    "spiral.retrieve_by_sigil", queue=own_queue(node),
                    kwargs={"sigil": sigil, "tenant": TENANT}))
                    for sigil in list(self.held) for node in NODES]
                for sigil, result in pending:
                    memory = result.get(timeout=WAIT, interval=0.01)
                    if memory is None or memory["id"] != self.held[sigil]:
                        self.refused.append((sigil, self.held[sigil]))
                self.rounds += 1
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.failure = exc


    def wait_rounds(self, count: int) -> None:
        """Wait until `count` more rounds are done (each begun after this call)."""
        after = self.rounds + 1 + count
        wait_until(lambda: self.rounds >= after or self.failure, WAIT,
                   message=f"the prober to finish {count} more rounds")


@contextmanager
def probing(env: dict[str, str], held: dict[str, str]) -> Iterator[Prober]:
    """A prober running while the block runs, and for two more rounds after it."""
    prober = Prober(env, held)
    prober.start()
    try:
        yield prober
        prober.wait_rounds(2)
    finally:
        prober.stopping.set()
        prober.join(timeout=WAIT)
    if prober.failure is not None:
        raise prober.failure


def start_node(env: dict[str, str], workdir: Path, name: str) -> CeleryProcess:
    queues = ",".join([DEFAULT_QUEUE, MAINTENANCE_QUEUE, own_queue(name)])
    return start_worker(env, workdir, name, "-Q", queues, concurrency=1)


def start(env: dict[str, str], workdir: Path, app: Celery) -> list[CeleryProcess]:
    nodes = [start_node(env, workdir, name) for name in NODES]
    wait_for_workers(app, NODES)
    return nodes


def roll(nodes: list[CeleryProcess], env: dict[str, str], workdir: Path, app: Celery,
         prober: Prober) -> list[CeleryProcess]:
    """Restart the nodes one at a time with `env`, as a Deployment's rollout does; after
    each, the prober does two rounds while the nodes run different settings (or all
    the new ones), each node signing and checking."""
    fresh = []
    for node in nodes:
        node.stop()
        fresh.append(start_node(env, workdir, node.name))
        wait_for_workers(app, [node.name])
        prober.wait_rounds(2)
    return fresh


def records(url: str, **env: str) -> dict[str, str]:
    """Memory id -> sigil of every memory in the tenant, read directly."""
    engine = open_engine(Settings.from_env({"REDIS_URL": url, **env}))
    try:
        assert_consistent(engine, TENANT)
        return {m["id"]: m["sigil"]
                for _, m in engine.storage.scan(TenantKeys(TENANT).memories)}
    finally:
        engine.close()


def stored_before(app: Celery, count: int = 8) -> dict[str, str]:
    return {(s := call(app, "spiral.store_memory", content=f"before {i}",
                       tenant=TENANT))["sigil"]: s["id"] for i in range(count)}


def test_a_stored_key_rotates_under_load_without_refusing_a_sigil(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    env = worker_env(server.url, **REFRESH)
    app = create_app(env)
    nodes = start(env, tmp_path / "workers", app)
    try:
        before = stored_before(app)
        with probing(env, before) as prober:
            rotated = spiral(tmp_path, "rotate-sigil-secret", "--json",
                             redis_url=server.url, **REFRESH)
        assert rotated.returncode == 0, rotated.stderr
        assert rotated.stderr.count("waiting 1.5 s") == 2
        assert prober.refused == []
        rotation = json_out(rotated)["rotation"]
        assert isinstance(rotation, dict)
        now = records(server.url)
        assert {key_id(s) for s in now.values()} == {rotation["key_id"]}
        assert len(now) == len(prober.held)
        for sigil, memory_id in before.items():  # the old sigils, in their grace period
            opened = call(app, "spiral.retrieve_by_sigil", sigil=sigil, tenant=TENANT)
            assert opened["sigil"] == now[memory_id]
    finally:
        for node in nodes:
            node.stop()
        server.stop()


def test_a_configured_key_rotates_by_rolling_restarts_without_refusing_a_sigil(
        tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    until = datetime.fromtimestamp(time.time() + 86400, UTC).isoformat()
    steps = [
        {"SPIRAL_SIGIL_SECRET": old},                                     # running
        {"SPIRAL_SIGIL_SECRET": old, "SPIRAL_SIGIL_OLD_SECRETS": new},    # 1: accept
        {"SPIRAL_SIGIL_SECRET": new,                                      # 2: sign
         "SPIRAL_SIGIL_OLD_SECRETS": f"{old}@{until}"},
    ]
    workdir = tmp_path / "workers"
    app = create_app(worker_env(server.url, **steps[0]))
    nodes = start(worker_env(server.url, **steps[0]), workdir, app)
    try:
        before = stored_before(app)
        with probing(worker_env(server.url, **steps[0]), before) as prober:
            for step in steps[1:]:
                nodes = roll(nodes, worker_env(server.url, **step), workdir, app, prober)
            resigned = spiral(tmp_path, "rotate-sigil-secret", "--resign-only", "--json",
                              redis_url=server.url, **steps[2])
        assert resigned.returncode == 0, resigned.stderr
        assert prober.refused == []
        assert prober.rounds >= 4
        now = records(server.url, **steps[2])
        assert {key_id(s) for s in now.values()} == {SigilKey(new.encode()).kid}

        # The grace period is over (the old secret's time has passed): one node with
        # the settings of then serves alone.
        for node in nodes:
            node.stop()
        past = datetime.fromtimestamp(time.time() - 1, UTC).isoformat()
        nodes = [start_worker(worker_env(server.url, SPIRAL_SIGIL_SECRET=new,
                                         SPIRAL_SIGIL_OLD_SECRETS=f"{old}@{past}"),
                              workdir, "after-grace", concurrency=1)]
        wait_for_workers(app, ["after-grace"])
        for sigil, memory_id in before.items():
            assert call(app, "spiral.retrieve_by_sigil", sigil=sigil, tenant=TENANT) is None
            opened = call(app, "spiral.retrieve_by_sigil", sigil=now[memory_id],
                          tenant=TENANT)
            assert opened["id"] == memory_id
    finally:
        for node in nodes:
            node.stop()
        server.stop()
