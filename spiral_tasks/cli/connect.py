"""Reaching a deployment from a command line: the broker, and the workers behind it.

A producer that cannot reach its broker should say so in one line and stop, not print
Celery's retry traceback; one that reaches the broker but no worker should say its
work is queued and what would serve it, not sit silent until a timeout.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from celery import Celery

from spiral_tasks.config.redis_urls import shown_url

#: How long to wait for a broker connection, and for workers to answer a ping.
CONNECT_TIMEOUT_S = 3
PING_TIMEOUT_S = 1.0


class Unreachable(Exception):
    """The broker did not answer."""


def check_broker(app: Celery) -> None:
    """Raise `Unreachable` with one line naming the broker if it does not answer."""
    url = app.conf.broker_url
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:  # kombu raises the transport's own errors
        raise Unreachable(f"cannot reach the broker at {shown_url(url)}: "
                          f"{_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def workers(app: Celery, timeout: float = PING_TIMEOUT_S) -> list[str]:
    """The names of the workers that answer a ping."""
    replies = app.control.ping(timeout=timeout) or []
    return sorted(name for reply in replies for name in reply)


def local_worker_name(node: str) -> str:
    """A worker node name on this host: `node@<hostname>`."""
    return f"{node}@{socket.gethostname()}"


def describe(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"
