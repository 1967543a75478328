"""Health checks for docker-compose's `healthcheck:` (or any supervisor that runs a
command): exit 0 when the service answers, 1 with one line saying what did not.

    python workers/healthcheck.py worker NODE     the worker node answers a ping
    python workers/healthcheck.py beat            Redis (beat's lock and schedule) answers
    python workers/healthcheck.py flower [PORT]   Flower's API answers, with auth

A worker is asked over the broker, as `celery inspect ping -d NODE` would, so a node
whose main process hangs (stopped, deadlocked, its broker connection lost) fails
while one whose pool children are merely busy passes. NODE is the worker's `-n`
(`w1@%h`: %h is this host, as celery expands it). Beat keeps no port to ask: it exits
when it loses Redis or its lock, so a beat still running whose Redis answers is
working (a standby included). Flower is asked for its workers' status with the first
user:password of FLOWER_BASIC_AUTH, so a Flower without that auth fails too.
"""

from __future__ import annotations

import base64
import inspect
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable

import redis
from celery.utils.nodenames import host_format
from kombu.exceptions import OperationalError

# Bad settings stop here, with one line naming each bad variable (exit status 2).
from spiral_tasks.celery import app
from spiral_tasks.config import current
from spiral_tasks.storage.redis import connect

#: Seconds each check may take; docker-compose's `timeout:` must allow for it plus
#: the interpreter's start.
TIMEOUT_S = 5.0


def check_worker(node: str) -> str | None:
    name = host_format(node)
    try:
        replies = app.control.ping(destination=[name], timeout=TIMEOUT_S) or []
    except OperationalError as exc:
        return f"worker {name}: the broker does not answer: {exc}"
    if not any(name in reply for reply in replies):
        return f"worker {name} did not answer a ping within {TIMEOUT_S:g} s"
    return None


def check_beat() -> str | None:
    url = current().redis_url
    if url is None:
        return "beat: REDIS_URL is not set"
    client = connect(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"beat: Redis does not answer: {exc}"
    finally:
        client.close()
    return None


def check_flower(port: str = "5555") -> str | None:
    credentials = os.environ.get("FLOWER_BASIC_AUTH", "").split(",")[0]
    if not credentials:
        return "flower: FLOWER_BASIC_AUTH is not set"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/workers?status=true",
        headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S):
            return None
    except urllib.error.HTTPError as exc:
        return f"flower: its API answered {exc.code} {exc.reason}"
    except OSError as exc:
        return f"flower: no answer on port {port}: {exc}"


Check = Callable[..., str | None]
CHECKS: dict[str, Check] = {"worker": check_worker, "beat": check_beat,
                            "flower": check_flower}
USAGE = "usage: healthcheck.py worker NODE | beat | flower [PORT]"


def accepts(check: Check, arguments: list[str]) -> bool:
    try:
        inspect.signature(check).bind(*arguments)
    except TypeError:
        return False
    return True


def main(argv: list[str]) -> int:
    check = CHECKS.get(argv[0]) if argv else None
    if check is None or not accepts(check, argv[1:]):
        print(USAGE, file=sys.stderr)
        return 2
    problem = check(*argv[1:])
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
