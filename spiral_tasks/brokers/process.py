"""Who holds a claim, and whether that holder is gone for good.

A claimed message or a private queue is tagged with its process's identity: host,
boot, PID namespace, pid and the process's start time (clock ticks since boot, from
/proc). A pid alone is not enough: pids are reused, and a new process that happens
to get a dead worker's pid must not keep that worker's claims forever. Start time
plus pid names one process for the whole life of a boot.

Only a process on the same host and in the same PID namespace can be judged: there
/proc tells the truth. A holder elsewhere (another container sharing the file, which
SQLite does not support well anyway) is never declared dead; the broker's visibility
timeout is the safety net for those.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SEPARATOR = "|"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of
    /proc/<pid>/stat), or None if there is no such process."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass(frozen=True)
class ProcessId:
    """One process, named so that its name is never given to another one."""

    host: str
    boot: str
    namespace: str
    pid: int
    started: str

    def __str__(self) -> str:
        return SEPARATOR.join((self.host, self.boot, self.namespace, str(self.pid),
                               self.started))

    @classmethod
    def parse(cls, text: str) -> ProcessId | None:
        """The identity `str()` wrote, or None for anything else."""
        parts = text.split(SEPARATOR)
        if len(parts) != 5 or not parts[3].isdigit():
            return None
        host, boot, namespace, pid, started = parts
        return cls(host, boot, namespace, int(pid), started)

    def is_dead(self) -> bool:
        """True only when this process certainly exited: same host and PID namespace
        as the caller, and either the machine rebooted since or no process with this
        pid and start time exists."""
        me = current()
        if (self.host, self.namespace) != (me.host, me.namespace) or not self.namespace:
            return False
        if self.boot != me.boot:
            return True
        return _start_time(self.pid) != self.started


def current() -> ProcessId:
    """This process (asked again after a fork: the child is another process)."""
    return _identity(os.getpid())


@cache
def _identity(pid: int) -> ProcessId:
    return ProcessId(host=socket.gethostname(),
                     boot=_read("/proc/sys/kernel/random/boot_id"),
                     namespace=_pid_namespace(), pid=pid,
                     started=_start_time(pid) or "")


def is_dead(holder: str) -> bool:
    """Whether the process named by `holder` (a `str(ProcessId)`) is certainly gone;
    a name that does not parse is never judged dead."""
    identity = ProcessId.parse(holder)
    return identity is not None and identity.is_dead()
