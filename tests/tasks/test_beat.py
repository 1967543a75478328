"""celery beat with celery-redbeat, started as the README and workers/beat.sh say.

Two beats run with the production relation between the GC interval, beat's max
interval and its lock timeout (60 s : 10 s : 50 s), scaled down through the
environment only (no --max-interval flag, which would hide a lock shorter than
beat's sleep, as it once did). Periods and the takeover are measured from the beats'
own log timestamps and cross-checked against the messages queued in Redis.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT  # type: ignore[import-untyped]
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from spiral_tasks.tasks.app import create_app
from spiral_tasks.tasks.beat import SpiralBeatScheduler
from spiral_tasks.tasks.config import MAINTENANCE_QUEUE
from spiral_tasks.testing.celery_worker import CeleryProcess, worker_env
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until

T = TypeVar("T")

#: The production defaults (SPIRAL_GC_EVERY_S, SPIRAL_BEAT_MAX_INTERVAL_S, and the lock
#: beat derives: 5 x the max interval), scaled down by SCALE.
SCALE = 20
GC_EVERY_S = 60 / SCALE
MAX_INTERVAL_S = 10 / SCALE
LOCK_TIMEOUT_S = 5 * MAX_INTERVAL_S
#: workers/beat.sh's command (and the README's), without --max-interval.
BEAT = ["beat", "-l", "INFO"]
LOCK_KEY = "redbeat::lock"
#: GC sends the active beat makes before it is killed: three periods between the
#: first and the last (9 s), more than three lock lifetimes (2.5 s) extended on time.
RUN_PERIODS = 4
#: Lateness a loaded machine may add to a wake-up, a Redis round trip and a log line.
LOAD_MARGIN_S = 1.5
#: How long a `celery beat` may take to import and start on a loaded machine.
STARTUP_S = 30.0
#: Log timestamps have millisecond resolution.
CLOCK_TOLERANCE_S = 0.01
SENT = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/MainProcess\] "
                  r"Scheduler: Sending due task spiral-gc ", re.MULTILINE)
FAILED = ("LockNotOwnedError", "Traceback", "raised exception", "ERROR/", "CRITICAL/")


def gc_sends(beat: CeleryProcess) -> list[float]:
    """When `beat` sent the periodic GC (epoch seconds, from its log's local times)."""
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for stamp in SENT.findall(beat.log())]


def queued_gcs(client: redis.Redis) -> int:
    """spiral.gc messages waiting in the maintenance queue (no worker consumes them)."""
    return sum(json.loads(raw)["headers"]["task"] == "spiral.gc"
               for raw in client.lrange(MAINTENANCE_QUEUE, 0, -1))


def sent_at_least(count: int, beat: CeleryProcess) -> Callable[[], list[float]]:
    """A predicate: `beat`'s GC send times once there are `count`, else nothing."""
    def sends() -> list[float]:
        found = gc_sends(beat)
        return found if len(found) >= count else []
    return sends


def assert_once_per_period(sends: list[float]) -> None:
    """Never two GCs in one period (a gap below it) and never a period without one
    (a gap of two); beat may be late within its period, not early."""
    gaps = [later - earlier for earlier, later in itertools.pairwise(sends)]
    assert all(GC_EVERY_S - CLOCK_TOLERANCE_S <= gap < 2 * GC_EVERY_S for gap in gaps), gaps


def assert_healthy(beat: CeleryProcess) -> None:
    assert beat.process is not None
    assert beat.process.poll() is None, beat.log()[-3000:]
    assert not [word for word in FAILED if word in beat.log()], beat.log()[-3000:]


def test_two_beats_schedule_once_per_period_and_the_standby_takes_over(
        tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    env = worker_env(server.url, SPIRAL_GC_EVERY_S=f"{GC_EVERY_S:g}",
                     SPIRAL_BEAT_MAX_INTERVAL_S=f"{MAX_INTERVAL_S:g}")
    beats = [CeleryProcess(BEAT, env, tmp_path / f"beat{n}", f"beat{n}").start()
             for n in range(2)]
    client = redis.Redis.from_url(server.url)
    try:
        holders = wait_until(lambda: [b for b in beats if "beat: Acquired lock" in b.log()],
                             STARTUP_S, message="a beat takes the lock")
        assert len(holders) == 1
        active, standby = holders[0], next(b for b in beats if b is not holders[0])
        wait_until(lambda: "beat: Starting..." in standby.log(), STARTUP_S,
                   message="the standby polls for the lock")
        for beat in beats:  # the lock follows the max interval beat runs with, unrounded
            assert f"({LOCK_TIMEOUT_S:g}s)" in beat.log()
            assert f"({MAX_INTERVAL_S:g}s)" in beat.log()

        lock_ttls_ms: list[int] = []

        def ran_enough() -> bool:
            lock_ttls_ms.append(client.pttl(LOCK_KEY))
            return len(gc_sends(active)) >= RUN_PERIODS

        wait_until(ran_enough, (RUN_PERIODS + 1) * (GC_EVERY_S + LOAD_MARGIN_S),
                   message=f"{RUN_PERIODS} periodic GCs")
        sends = gc_sends(active)
        for beat in beats:
            assert_healthy(beat)
        assert gc_sends(standby) == []
        assert "Acquired lock" not in standby.log()
        assert_once_per_period(sends)
        # The lock never lapsed, and lives its exact 2.5 s (celery-redbeat's int()
        # would make it 2 s).
        assert min(lock_ttls_ms) > 0, lock_ttls_ms
        assert 1000 * int(LOCK_TIMEOUT_S) < max(lock_ttls_ms) <= 1000 * LOCK_TIMEOUT_S
        wait_until(lambda: queued_gcs(client) == len(gc_sends(active)), LOAD_MARGIN_S,
                   message="every logged GC is queued once")

        # Killed mid-lock, right after a GC: the lock lapses at most LOCK_TIMEOUT_S
        # after the kill (its last extension came before it); the standby retries every
        # MAX_INTERVAL_S, so it holds the lock within LOCK_TIMEOUT_S + MAX_INTERVAL_S,
        # and the next GC is due within GC_EVERY_S of the kill, which in the
        # production relation is the same sum (60 = 50 + 10). So the standby sends the
        # next GC within LOCK_TIMEOUT_S + MAX_INTERVAL_S of the kill, plus lateness.
        killed_at = time.time()
        os.kill(active.pid, signal.SIGKILL)
        assert active.process is not None
        active.process.wait(timeout=10)
        bound_s = LOCK_TIMEOUT_S + MAX_INTERVAL_S + LOAD_MARGIN_S
        first = wait_until(sent_at_least(1, standby), 3 * bound_s, message="the standby sends a GC")
        assert first[0] - killed_at <= bound_s, (first[0] - killed_at, standby.log()[-3000:])

        # The new active beat keeps scheduling: it does not die at its next extension
        # (which comes within MAX_INTERVAL_S, well before its second GC).
        taken_over = wait_until(sent_at_least(2, standby), 3 * (GC_EVERY_S + LOAD_MARGIN_S),
                                message="two GCs from the standby")
        assert_healthy(standby)
        assert_once_per_period(sends + taken_over)
        wait_until(lambda: queued_gcs(client) == len(sends + gc_sends(standby)),
                   LOAD_MARGIN_S, message="every logged GC is queued once")
    finally:
        client.close()
        for beat in beats:
            beat.stop()
        server.stop()


@pytest.mark.parametrize(("env", "flags", "message"), [
    ({"SPIRAL_BEAT_LOCK_TIMEOUT_S": "0.9"}, [],
     "SPIRAL_BEAT_LOCK_TIMEOUT_S='0.9': must exceed twice SPIRAL_BEAT_MAX_INTERVAL_S (0.5 s)"),
    ({"SPIRAL_BEAT_LOCK_TIMEOUT_S": "2.5"}, ["--max-interval", "2"],
     "SPIRAL_BEAT_LOCK_TIMEOUT_S='2.5': must exceed twice beat's --max-interval (2 s)"),
], ids=["settings", "command-line"])
def test_a_lock_shorter_than_beats_sleep_is_refused(
        tmp_path: Path, env: dict[str, str], flags: list[str], message: str) -> None:
    server = RedisServer(tmp_path).start()
    beat = CeleryProcess([*BEAT, *flags], worker_env(
        server.url, SPIRAL_BEAT_MAX_INTERVAL_S=f"{MAX_INTERVAL_S:g}", **env),
        tmp_path / "beat", "beat").start()
    client = redis.Redis.from_url(server.url)
    try:
        assert beat.process is not None
        assert beat.process.wait(timeout=STARTUP_S) == 2
        assert f"spiral-tasks: bad setting: {message}" in beat.log()
        assert "Traceback" not in beat.log()
        assert client.exists(LOCK_KEY) == 0  # refused before it took the lock
    finally:
        client.close()
        beat.stop()
        server.stop()


@pytest.mark.parametrize(("env", "max_interval", "lock_timeout"), [
    ({}, None, 5 * 10.0),
    ({"SPIRAL_BEAT_MAX_INTERVAL_S": "0.5"}, None, 2.5),
    ({"SPIRAL_BEAT_MAX_INTERVAL_S": "0.5"}, 3.0, 15.0),
    ({"SPIRAL_BEAT_MAX_INTERVAL_S": "0.5", "SPIRAL_BEAT_LOCK_TIMEOUT_S": "7.5"}, 3.0, 7.5),
])
def test_the_lock_follows_the_max_interval_beat_runs_with(
        env: dict[str, str], max_interval: float | None, lock_timeout: float) -> None:
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1/0", **env})
    scheduler = SpiralBeatScheduler(app, max_interval=max_interval, lazy=True)
    assert scheduler.lock_timeout == lock_timeout


def test_a_beat_stopped_past_its_lock_takes_it_back_when_no_other_beat_has(
        tmp_path: Path) -> None:
    """The only beat, stopped (SIGSTOP: a paused VM, a starved process) until its lock
    expired, goes on scheduling when it resumes: it takes the free lock back. It used
    to die at its next extension (LockNotOwnedError), leaving no beat at all."""
    server = RedisServer(tmp_path).start()
    env = worker_env(server.url, SPIRAL_GC_EVERY_S=f"{GC_EVERY_S:g}",
                     SPIRAL_BEAT_MAX_INTERVAL_S=f"{MAX_INTERVAL_S:g}")
    beat = CeleryProcess(BEAT, env, tmp_path / "beat", "beat").start()
    client = redis.Redis.from_url(server.url)
    try:
        wait_until(sent_at_least(1, beat), STARTUP_S + GC_EVERY_S + LOAD_MARGIN_S,
                   message="the beat's first GC")
        os.kill(beat.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: client.exists(LOCK_KEY) == 0, 3 * LOCK_TIMEOUT_S,
                       message="the stopped beat's lock to expire")
            before = len(gc_sends(beat))
        finally:
            os.kill(beat.pid, signal.SIGCONT)
        wait_until(sent_at_least(before + 2, beat), 3 * (GC_EVERY_S + LOAD_MARGIN_S),
                   message=lambda: f"two more GCs once it resumed\n{beat.log()[-3000:]}")
        assert "the lock expired while this beat was stalled" in beat.log()
        assert_healthy(beat)
        assert client.pttl(LOCK_KEY) > 0
    finally:
        client.close()
        beat.stop()
        server.stop()


def held_lock(scheduler: SpiralBeatScheduler, client: redis.Redis) -> Lock:
    """The lock as celery-redbeat takes it when beat starts (`beat_init`)."""
    lock = client.lock(scheduler.lock_key, timeout=scheduler.lock_timeout,
                       sleep=scheduler.max_interval)
    lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
    assert lock.acquire(blocking=False)
    return lock


def test_a_beat_extends_its_lock_takes_it_back_when_free_and_never_from_another(
        redis_url: str) -> None:
    app = create_app({"REDIS_URL": redis_url,
                      "SPIRAL_BEAT_MAX_INTERVAL_S": f"{MAX_INTERVAL_S:g}"})
    scheduler = SpiralBeatScheduler(app, lazy=True)
    client = redis.Redis.from_url(redis_url)
    try:
        scheduler.lock = held_lock(scheduler, client)
        scheduler.keep_lock()  # held: extended
        assert scheduler.lock.owned()
        client.delete(LOCK_KEY)  # expired, and nobody took it
        scheduler.keep_lock()
        assert scheduler.lock.owned()
        client.set(LOCK_KEY, b"another beat's token", px=int(1000 * LOCK_TIMEOUT_S))
        with pytest.raises(LockNotOwnedError):
            scheduler.keep_lock()
        assert client.get(LOCK_KEY) == b"another beat's token"
    finally:
        client.close()
