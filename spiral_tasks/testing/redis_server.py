"""A real `redis-server` process on a free loopback port, owned by its caller.

Tests and benchmarks start their own server so they can flush, stop and restart it
without touching anyone else's data. It may speak TLS only (certificates from
`spiral_tasks.testing.certificates`, clients verified too) and require a password of
its default user, so a test can give another user only what an ACL allows.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

import redis

from spiral_tasks.storage.redis import connect
from spiral_tasks.testing.certificates import Certificates
from spiral_tasks.testing.waiting import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None,
                 tls: Certificates | None = None, password: str | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.tls = tls
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of the default user (with the password, if the server has one)."""
        return self.url_as("", self.password) if self.password else self.url_as()

    def url_as(self, user: str = "", password: str | None = None,
               client_certificate: bool = True) -> str:
        """The URL a client connects with: `rediss://` with the CA (and the client's
        certificate, unless not wanted) as TLS parameters when the server speaks TLS,
        and `user:password@` when given."""
        credentials = "" if password is None else f"{quote(user)}:{quote(password, safe='')}@"
        scheme, query = "redis", ""
        if self.tls is not None:
            scheme = "rediss"
            query = f"?ssl_ca_certs={self.tls.ca}"
            if client_certificate:
                query += f"&ssl_certfile={self.tls.client_cert}&ssl_keyfile={self.tls.client_key}"
        return f"{scheme}://{credentials}127.0.0.1:{self.port}/0{query}"

    def client(self) -> redis.Redis:
        """A client of the default user, through the project's own `connect`."""
        return connect(self.url)

    def arguments(self) -> list[str]:
        """redis-server's arguments for the port, TLS and the password."""
        if self.tls is None:
            listen = ["--port", str(self.port)]
        else:
            listen = ["--port", "0", "--tls-port", str(self.port),
                      "--tls-cert-file", str(self.tls.server_cert),
                      "--tls-key-file", str(self.tls.server_key),
                      "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "yes"]
        password = [] if self.password is None else ["--requirepass", self.password]
        return [*listen, *password]

    def start(self, *extra: str) -> RedisServer:
        """Start the server (extra arguments go to redis-server) and wait for PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, *self.arguments(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process = self.process
        client = self.client()

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
