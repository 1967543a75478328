"""The Redis deployment over TLS, as an ACL user that may touch only this project's
keys: the broker, the results, storage, locks, events, celery-redbeat, Flower, the
health checks and the CLI, against a real `redis-server` that speaks TLS only and
verifies its clients' certificates (tests/conftest.py `tls_redis`). The ACL user is
made with the README's own `ACL SETUSER` line, through `redis-cli`, as an operator
would. Then the attacks: the user touching other keys, clients meeting a server whose
certificate another CA signed, or no client certificate, or plaintext; and every
secret looked for in everything the processes printed, answered or stored.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from celery import Celery
from redbeat.schedulers import get_redis  # type: ignore[import-untyped]

from spiral_tasks.cli.connect import Unreachable, check_broker
from spiral_tasks.config import Settings
from spiral_tasks.errors import StorageUnavailable
from spiral_tasks.factory import open_engine
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.storage.redis import connect
from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import (
    CeleryProcess,
    node_name,
    running_workers,
    worker_env,
)
from spiral_tasks.testing.certificates import Certificates
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until
from tests.cli.programs import SCRIPTS, spiral
from tests.invariants import assert_consistent
from tests.scripts import ROOT, Flower, healthcheck, running_flower, script_env

#: The ACL user's password, the sigil secret and Flower's users: known strings, so
#: the test can look for them in everything printed.
SPIRAL_PASSWORD = "spiral-pw-8d2e4b"
SIGIL_SECRET = "sigil-secret-51a7c0"
FLOWER_USERS = "ops:flower-pw-0b9d33"
TENANT = "tls"
NODES = ("tls1", "tls2")
WAIT = 60
#: The README's line, with the password it says to choose.
ACL_LINE = re.compile(r"^ACL SETUSER spiral reset on >CHANGE-ME .*$", re.MULTILINE)


def readme_acl_line() -> str:
    found = ACL_LINE.findall((ROOT / "README.md").read_text())
    assert len(found) == 1, "the README gives one ACL SETUSER line for the spiral user"
    line: str = found[0]
    return line


def redis_cli(server: RedisServer, line: str) -> str:
    """`line` sent by `redis-cli` over TLS as the default user, as the README shows."""
    binary = shutil.which("redis-cli")
    assert binary is not None, "redis-cli is installed with redis-server"
    assert server.tls is not None
    assert server.password is not None
    done = subprocess.run(
        [binary, "--tls", "--cacert", str(server.tls.ca), "--cert", str(server.tls.client_cert),
         "--key", str(server.tls.client_key), "-h", "127.0.0.1", "-p", str(server.port)],
        input=line + "\n", env={"REDISCLI_AUTH": server.password}, capture_output=True,
        text=True, timeout=30, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def acl_url(tls_redis: RedisServer) -> str:
    """The URL of the README's ACL user `spiral`, made by the README's line."""
    line = readme_acl_line().replace("CHANGE-ME", SPIRAL_PASSWORD)
    assert redis_cli(tls_redis, line) == "OK"
    return tls_redis.url_as("spiral", SPIRAL_PASSWORD)


@dataclass
class Deployment:
    env: dict[str, str]
    producer: Celery
    workers: list[CeleryProcess]
    beat: CeleryProcess
    flower: Flower
    workdir: Path
    #: What the test's own programs (CLI, health checks, celery inspect) printed.
    outputs: list[str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`spiral ARGS` with the deployment's settings; it must succeed."""
        done = spiral(self.workdir, *args, **self.env)
        self.outputs += [done.stdout, done.stderr]
        assert done.returncode == 0, done.stderr
        return done


@pytest.fixture(scope="module")
def deployment(acl_url: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    """Two prefork workers, a beat (GC every second) and Flower, all as the ACL user
    over TLS, each with every secret in its environment."""
    workdir = tmp_path_factory.mktemp("transport")
    env = worker_env(acl_url, SPIRAL_SIGIL_SECRET=SIGIL_SECRET, FLOWER_BASIC_AUTH=FLOWER_USERS,
                     SPIRAL_GC_EVERY_S="1", SPIRAL_BEAT_MAX_INTERVAL_S="1")
    producer = create_app(env)
    beat = CeleryProcess(["beat", "-l", "INFO"], env, workdir, "beat").start()
    try:
        with running_workers(producer, env, workdir, NODES) as workers, \
                running_flower(env, workdir / "flower", FLOWER_USERS) as flower:
            yield Deployment(env, producer, workers, beat, flower, workdir, [])
    finally:
        beat.stop()


def test_the_readme_acl_user_serves_the_whole_deployment_over_tls(
        deployment: Deployment, acl_url: str) -> None:
    """Stores from two workers' four children into one tenant (the locks), retrieve,
    collect, GC, rebuild and stats, the events, the invariant read back as the user."""
    events = connect(acl_url).pubsub()
    events.psubscribe("spiralmemory:*")
    sent = [deployment.producer.send_task("spiral.store_memory",
                                          kwargs={"content": f"over tls {n}", "tenant": TENANT})
            for n in range(40)]
    stored = [result.get(timeout=WAIT) for result in sent]
    first = stored[0]["id"]
    send = deployment.producer.send_task
    retrieved = send("spiral.retrieve_memory", kwargs={"memory_id": first, "tenant": TENANT})
    assert retrieved.get(timeout=WAIT)["content"] == "over tls 0"
    collected = send("spiral.collect_memory", kwargs={"memory_id": first, "tenant": TENANT})
    assert collected.get(timeout=WAIT) == {"id": first, "collected": True}
    assert send("spiral.gc", kwargs={"tenant": TENANT}).get(timeout=WAIT)["complete"]
    assert send("spiral.rebuild_stats", kwargs={"tenant": TENANT}).get(timeout=WAIT)[
        "total_nodes"] == 39
    assert send("spiral.stats", kwargs={"tenant": TENANT}).get(timeout=WAIT)["consistent"]

    def stored_event() -> bool:
        message = events.get_message(timeout=0.5)
        return bool(message and message["channel"] == b"spiralmemory:stored")

    wait_until(stored_event, WAIT, interval=0, message="a spiralmemory:stored event")
    events.close()
    engine = open_engine(Settings.from_env({"REDIS_URL": acl_url}))
    try:
        assert assert_consistent(engine, TENANT) == 39
    finally:
        engine.close()


def test_beat_schedules_over_tls_as_the_acl_user(deployment: Deployment,
                                                 tls_redis: RedisServer) -> None:
    admin = tls_redis.client()

    def gc_runs() -> int:
        meta = admin.hget("redbeat:spiral-gc", "meta")
        return int(json.loads(meta)["total_run_count"]) if meta else 0

    wait_until(lambda: gc_runs() >= 2, WAIT, interval=0.2,
               message=lambda: f"beat to send GC twice\n{deployment.beat.log()[-2000:]}")
    assert admin.exists("redbeat::lock")
    admin.close()


def test_health_checks_and_the_cli_work_over_tls_as_the_acl_user(
        deployment: Deployment) -> None:
    env = script_env(deployment.env)
    for args in (["worker", node_name(NODES[0])], ["beat"],
                 ["flower", str(deployment.flower.port)]):
        checked = healthcheck(env, deployment.workdir, *args)
        deployment.outputs += [checked.stdout, checked.stderr]
        assert (checked.returncode, checked.stderr) == (0, ""), args
    assert "holds" in deployment.run("stats", "--tenant", TENANT).stdout
    repaired = deployment.run("repair", "--tenant", TENANT, "--dry-run")
    assert "Nothing to correct" in repaired.stdout
    inspected = subprocess.run(
        [str(SCRIPTS / "celery"), "-A", "spiral_tasks", "inspect",
         "conf", "-d", node_name(NODES[0])], cwd=deployment.workdir, env=env,
        capture_output=True, text=True, timeout=60, check=True)
    deployment.outputs += [inspected.stdout, inspected.stderr]
    assert "redbeat_redis_url" in inspected.stdout


def test_flower_requires_auth_and_watches_the_tls_broker(deployment: Deployment) -> None:
    flower = deployment.flower
    assert flower.get("/api/workers", credentials=None).status == 401
    assert flower.get("/api/workers", credentials="ops:wrong").status == 401
    lengths = flower.api("/api/queues/length")["active_queues"]
    assert {queue["name"] for queue in lengths} == {"spiral", "spiral.maintenance"}
    wait_until(lambda: node_name(NODES[0]) in flower.api("/api/workers?refresh=true"), WAIT,
               interval=0.5, message="Flower to list the worker")


#: How Redis words a refusal by an ACL.
REFUSAL = "no permissions|can't access"


def refusals(server: RedisServer) -> list[dict[str, object]]:
    """What Redis logged as refused by an ACL (`ACL LOG`)."""
    admin = server.client()
    try:
        return [{k: entry[k] for k in ("reason", "context", "object", "username")}
                for entry in admin.acl_log(count=1000)]
    finally:
        admin.close()


def test_the_acl_user_cannot_touch_another_key(deployment: Deployment, acl_url: str,
                                               tls_redis: RedisServer) -> None:
    """First, nothing the deployment did so far was refused; then the user's own
    attempts on other keys, channels and the server are, and change nothing. (The
    log is then emptied, for the last test of the module.)"""
    assert refusals(tls_redis) == []
    admin = tls_redis.client()
    admin.set("billing:balance", "100")
    user = connect(acl_url)
    attempts: list[Callable[[], object]] = [
        lambda: user.get("billing:balance"),
        lambda: user.set("billing:balance", "0"),
        lambda: user.delete("billing:balance"),
        lambda: user.rename("t:{x}:memory_count", "billing:balance"),
        lambda: user.eval("return redis.call('GET', KEYS[1])", 1, "billing:balance"),
        lambda: user.eval("return redis.call('SET', 'billing:balance', '0')", 1, "t:{x}:y"),
        lambda: user.publish("billing:events", "x"),
        user.flushall,
        user.flushdb,
        lambda: user.keys("*"),
        lambda: user.config_get("requirepass"),
        lambda: user.config_set("requirepass", ""),
        user.acl_list,
        lambda: user.execute_command("MONITOR"),
    ]
    for attempt in attempts:
        # A script's refusal comes back as the script's error, not NOPERM.
        with pytest.raises(redis.exceptions.ResponseError, match=REFUSAL):
            attempt()
    subscriber = user.pubsub()
    subscriber.subscribe("billing:events")
    with pytest.raises(redis.exceptions.ResponseError, match=REFUSAL):
        subscriber.get_message(timeout=1)  # the refusal is the subscription's reply
    subscriber.close()
    assert admin.get("billing:balance") == b"100"
    assert user.set("t:{x}:probe", "1")
    assert user.delete("t:{x}:probe") == 1
    user.close()
    assert {entry["object"] for entry in refusals(tls_redis)} >= {
        "billing:balance", "billing:events", "flushall", "keys"}
    admin.acl_log_reset()
    admin.close()


def reach_storage(url: str) -> None:
    open_storage("redis", redis_url=url).close()


def reach_broker(url: str) -> None:
    check_broker(create_app(worker_env(url)))


def reach_results(url: str) -> None:
    create_app(worker_env(url)).backend.client.ping()


def reach_beat(url: str) -> None:
    app = create_app(worker_env(url))
    get_redis(app).ping()


CLIENTS = {"storage": reach_storage, "broker": reach_broker, "results": reach_results,
           "beat": reach_beat}
REFUSED = (StorageUnavailable, Unreachable, redis.ConnectionError)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("other-ca"), name="another CA")


def variants(server: RedisServer, other: Certificates) -> dict[str, str]:
    """URLs that must not connect: each takes one thing away from a good one."""
    assert server.tls is not None
    good = server.url_as("spiral", SPIRAL_PASSWORD)
    client = f"&ssl_certfile={server.tls.client_cert}&ssl_keyfile={server.tls.client_key}"
    return {
        "a CA that did not sign the server's certificate":
            good.replace(f"ssl_ca_certs={server.tls.ca}", f"ssl_ca_certs={other.ca}"),
        "no CA: the system's trust store, where a test CA is not":
            good.replace(f"ssl_ca_certs={server.tls.ca}", "ssl_cert_reqs=required"),
        "no client certificate": server.url_as("spiral", SPIRAL_PASSWORD,
                                               client_certificate=False),
        "plaintext": f"redis://spiral:{quote(SPIRAL_PASSWORD)}@127.0.0.1:{server.port}/0",
        "a client certificate of another CA": good.replace(client, (
            f"&ssl_certfile={other.client_cert}&ssl_keyfile={other.client_key}")),
    }


@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_client_verifies_the_server_and_shows_its_certificate(
        client: str, acl_url: str, tls_redis: RedisServer, other_ca: Certificates) -> None:
    reach = CLIENTS[client]
    reach(acl_url)
    for why, url in variants(tls_redis, other_ca).items():
        with pytest.raises(REFUSED) as caught:
            reach(url)
        if why.startswith(("a CA", "no CA")):
            assert "certificate verify failed" in str(caught.value), (why, caught.value)
        assert SPIRAL_PASSWORD not in str(caught.value), why


# --- Secrets ---------------------------------------------------------------------------

def secrets(server: RedisServer) -> dict[str, str]:
    """Every secret of the deployment, and the forms it could leak in."""
    flower_password = FLOWER_USERS.split(":", 1)[1]
    assert server.password is not None
    return {"the ACL user's password": SPIRAL_PASSWORD,
            "the administrator's password": server.password,
            "the sigil secret": SIGIL_SECRET,
            "Flower's password": flower_password,
            "Flower's credentials as an Authorization header":
                base64.b64encode(FLOWER_USERS.encode()).decode()}


def leaks(texts: list[str], server: RedisServer) -> list[str]:
    return [f"{name} in {text[:200]!r}..." for text in texts
            for name, secret in secrets(server).items() if secret in text]


def test_no_secret_in_any_log_result_page_or_output(deployment: Deployment,
                                                    tls_redis: RedisServer) -> None:
    """Everything the deployment printed (worker banners and task logs, beat, Flower,
    the CLI, the health checks, `celery inspect conf`), every page Flower serves about
    workers and tasks, and every task result stored, grepped for each secret."""
    flower = deployment.flower
    node = node_name(NODES[0])
    pages = [flower.get(path).body for path in (
        "/api/workers?refresh=true", "/api/tasks", "/workers", "/tasks", "/broker",
        f"/worker/{node}")]
    admin = tls_redis.client()
    results = [admin.get(key).decode() for key in admin.scan_iter("celery-task-meta-*")]
    admin.close()
    logs = [process.log() for process in (*deployment.workers, deployment.beat,
                                          flower.process)]
    assert results
    assert all(logs)
    assert all(pages)
    # The logs name the broker, its password hidden: the right text was searched.
    assert "rediss://spiral:**@127.0.0.1" in logs[0]
    assert leaks(logs + pages + results + deployment.outputs, tls_redis) == []


def test_nothing_the_deployment_did_was_refused(deployment: Deployment,
                                                tls_redis: RedisServer) -> None:
    """Redis logs every command an ACL refuses: after the attacks (whose entries were
    checked and cleared), the deployment kept working (beat sending GC every second,
    the workers running it, Flower listening) and met no refusal."""
    admin = tls_redis.client()
    runs = int(json.loads(admin.hget("redbeat:spiral-gc", "meta"))["total_run_count"])
    wait_until(lambda: int(json.loads(admin.hget("redbeat:spiral-gc", "meta"))[
        "total_run_count"]) > runs + 1, WAIT, interval=0.2, message="two more GC runs")
    admin.close()
    assert refusals(tls_redis) == []
    # Nor did any client fall back to TLS without checks (kombu's way with a bare URL).
    for process in (*deployment.workers, deployment.beat, deployment.flower.process):
        assert "insecure SSL" not in process.log(), process.name
