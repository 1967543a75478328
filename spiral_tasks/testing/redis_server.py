"""A real `redis-server` process on a free loopback port, owned by its caller.

Tests and benchmarks start their own server so they can flush, stop and restart it
without touching anyone else's data.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import redis

from spiral_tasks.testing.waiting import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *extra: str) -> RedisServer:
        """Start the server (extra arguments go to redis-server) and wait for PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process = self.process
        client = redis.Redis(port=self.port)

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with "
                                   f"{process.returncode} while starting")
            return bool(client.ping())

        try:
            wait_until(answers, 10, interval=0.02, ignoring=(redis.ConnectionError,),
                       message=f"redis-server on port {self.port} to answer PING")
            return self
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
