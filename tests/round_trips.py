"""The commands a block of code sends a real Redis, one per round trip, as the server's
MONITOR reports them (what scripts call inside themselves left out)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from spiral_tasks.testing.waiting import wait_until


@contextmanager
def commands_sent(url: str) -> Iterator[list[str]]:
    """Inside the block, the list fills with the name of each command clients send
    (upper case); it is complete when the block ends. Markers sent through a client
    of this helper's own bound the block, so nothing before or after it is counted."""
    marker = uuid.uuid4().hex
    seen: list[str] = []
    started, ended = threading.Event(), threading.Event()
    watcher = redis.Redis.from_url(url)
    sender = redis.Redis.from_url(url)

    def watch() -> None:
        with watcher.monitor() as monitor:
            for command in monitor.listen():
                text = command["command"]
                if text == f"ECHO {marker}-start":
                    started.set()
                elif text == f"ECHO {marker}-end":
                    ended.set()
                    return
                elif started.is_set() and command.get("client_type") != "lua":
                    seen.append(text.split(" ", 1)[0].upper())

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        wait_until(lambda: bool(sender.echo(f"{marker}-start")) and started.is_set(), 30,
                   message="the MONITOR to see its start marker")
        found: list[str] = []
        yield found
        sender.echo(f"{marker}-end")
        wait_until(ended.is_set, 30, message="the MONITOR to see its end marker")
        # The start markers sent before MONITOR saw the first one are not commands of
        # the block; neither is anything this helper sent.
        found += [c for c in seen if c != "ECHO"]
    finally:
        thread.join(timeout=30)
        sender.close()
        watcher.close()
