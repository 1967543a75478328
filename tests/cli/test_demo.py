"""spiral-demo, the README's main job: run as a user would, on the embedded default."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from spiral_tasks.cli.worker import _interrupts_deferred
from spiral_tasks.testing.celery_worker import worker_env
from spiral_tasks.testing.waiting import wait_until


def run_demo(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`spiral-demo` in `workdir` with nothing configured (the embedded default)."""
    return subprocess.run([sys.executable, "-m", "spiral_tasks.cli.demo", *args],
                          cwd=workdir, env=worker_env(None, **env), capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_demo_runs_tasks_through_a_worker_and_a_second_run_finds_its_data(
        tmp_path: Path) -> None:
    first = run_demo(tmp_path, "--count", "120", "--seed", "3")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "embedded deployment (no server)" in out
    assert "started one for this run" in out  # no worker was running: it started one
    assert "holds no memories yet" in out
    assert "1. Rebuild before the run" in out
    assert "120 stores in" in out
    assert "collected 12 by id" in out
    assert ": holds" in out  # the invariant
    assert "Spirals corrected:   0" in out
    assert (tmp_path / "spiraldb").is_dir()
    second = run_demo(tmp_path, "--count", "30", "--verbose")
    assert second.returncode == 0, second.stderr
    assert "found existing data: 128 memories" in second.stdout  # 120 + 20 timed - 12
    assert "counter" in second.stdout or "unchanged spiral" in second.stdout  # --verbose


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--count", "-5"], {}, "--count"),
    (["--count", "0"], {}, "--count"),
    (["--tenant", "no/slash"], {}, "--tenant"),
    ([], {"SPIRAL_VISIBILITY_TIMEOUT_S": "1h"}, "SPIRAL_VISIBILITY_TIMEOUT_S='1h'"),
    ([], {"REDIS_URL": "redis://host:6379/0/0"}, "REDIS_URL='redis://host:6379/0/0'"),
])
def test_bad_arguments_and_settings_are_refused_before_anything_happens(
        tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    result = run_demo(tmp_path, *args, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []  # no storage, no broker folder, nothing


def test_the_demo_keeps_working_once_its_tenant_is_full(tmp_path: Path) -> None:
    """Past the node limit every store evicts the least valuable memory, and once only
    protected memories are left stores are refused: the demo says so and carries on,
    and the invariant holds (the limit scaled down from 2,618 to 100)."""
    result = run_demo(tmp_path, "--count", "400", "--seed", "5",
                      SPIRAL_MAX_MEMORY_NODES="100")
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout
    assert "CapacityExceeded" in result.stdout
    assert ": holds" in result.stdout
    assert "Traceback" not in result.stderr


def _in_folder(folder: Path) -> list[int]:
    """Processes whose working directory is `folder`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/cwd") == str(folder):
                    found.append(int(entry))
    return found


def test_the_demo_runs_while_a_deployed_node_serves_metrics_on_9099(tmp_path: Path) -> None:
    """The worker a run starts serves no metrics (nobody scrapes it), so a node of the
    Redis deployment on this host, holding the default METRICS_PORT, does not stop it."""
    with contextlib.ExitStack() as held:
        listener = held.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already held by someone: the same case
            listener.bind(("0.0.0.0", 9099))
            listener.listen()
        result = run_demo(tmp_path, "--count", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "started one for this run" in result.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_stops_the_worker_it_started(tmp_path: Path,
                                                         sig: signal.Signals) -> None:
    process = subprocess.Popen([sys.executable, "-m", "spiral_tasks.cli.demo", "--count", "5"],
                               cwd=tmp_path, env=worker_env(None),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_until(lambda: len(_in_folder(tmp_path)) > 1, 60,
                   message="spiral-demo to start its worker")
        os.kill(process.pid, sig)
        process.wait(timeout=60)
        wait_until(lambda: not _in_folder(tmp_path), 60,
                   message="the worker spiral-demo started to stop")
    finally:
        for pid in _in_folder(tmp_path):
            os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()


def test_a_signal_while_a_worker_is_started_is_acted_on_once_there_is_a_handle() -> None:
    """SIGINT or SIGTERM arriving inside `Popen` (after the fork, before the run had a
    handle on the worker) left the worker running after the run: while one is started,
    both are held back and listed, and the handlers the run had come back after."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with _interrupts_deferred() as deferred:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)
        assert deferred == [signal.SIGINT, signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before
