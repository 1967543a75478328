"""A certificate authority of a test's own, made with the `openssl` command: a server
certificate for 127.0.0.1 (and localhost) and a client certificate, for a private
`redis-server` that speaks TLS and verifies its clients.

The commands are the ones ops/RUNBOOK.md gives operators for a private CA, so the
runbook's procedure is the one the tests run. Keys are elliptic-curve (P-256): quick
to make on a loaded machine.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Days the certificates are valid: a test run, with room for a slow one.
DAYS = "2"
KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("openssl is not installed (apt-get install openssl)")
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


@dataclass(frozen=True)
class Certificates:
    """PEM files in `folder`: the CA's certificate, the server's and the client's
    certificates with their keys (readable by their owner only)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"

    @classmethod
    def make(cls, folder: Path, name: str = "spiral test CA") -> Certificates:
        """A new CA called `name`, and a server and a client certificate it signed."""
        folder.mkdir(parents=True, exist_ok=True)
        made = cls(folder)
        _openssl("req", "-x509", *KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", DAYS,
                 "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
        made._sign("server", "/CN=127.0.0.1", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                   "extendedKeyUsage=serverAuth")
        made._sign("client", "/CN=spiral", "extendedKeyUsage=clientAuth")
        for key in folder.glob("*.key"):
            key.chmod(0o600)
        return made

    def _sign(self, name: str, subject: str, *extensions: str) -> None:
        """`name`.pem and `name`.key: a certificate the CA signs in one command (OpenSSL
        3's `req -x509 -CA`), not a CA itself, with `extensions`."""
        added = [arg for extension in ("basicConstraints=critical,CA:FALSE", *extensions)
                 for arg in ("-addext", extension)]
        _openssl("req", "-x509", *KEY, "-keyout", f"{name}.key", "-out", f"{name}.pem",
                 "-days", DAYS, "-subj", subject, "-CA", "ca.pem", "-CAkey", "ca.key",
                 *added, cwd=self.folder)
