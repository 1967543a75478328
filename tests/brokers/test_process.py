"""Judging claimants dead: a real child process, killed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from spiral_tasks.brokers import process


def test_a_process_is_dead_once_killed_and_a_reused_pid_does_not_revive_it() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from spiral_tasks.brokers import process; "
         "print(process.current(), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    holder = child.stdout.readline().strip()
    identity = process.ProcessId.parse(holder)
    assert identity is not None
    assert identity.pid == child.pid
    assert not process.is_dead(holder)
    # Same pid, another start time: another process (a reused pid), so dead.
    assert dataclasses.replace(identity, started="1").is_dead()
    child.kill()
    child.wait(timeout=30)
    assert process.is_dead(holder)


def test_what_cannot_be_judged_is_never_dead() -> None:
    me = process.current()
    assert not process.is_dead(str(me))
    assert not process.is_dead("not an identity")
    elsewhere = dataclasses.replace(me, host="another-host", pid=1, started="1")
    assert not elsewhere.is_dead()
    other_namespace = dataclasses.replace(me, namespace="pid:[1]", pid=1, started="1")
    assert not other_namespace.is_dead()
    previous_boot = dataclasses.replace(me, boot="an-earlier-boot")
    assert previous_boot.is_dead()
