"""A container of a manifest run on this host the way the kubelet would run it.

The image is this repository (the Dockerfile copies it to /app, its WORKDIR, and puts
the virtualenv first on PATH), so a container's command runs from the repository root
with this virtualenv. The environment is built as the kubelet builds it: envFrom
sources in order, then `env` (values, the downward API's pod name, Secret and
ConfigMap keys), `$(VAR)` expanded in env values, command and args, never in probes.
What a pod has of its own and this host shares (its network namespace, its volumes)
is given by the caller: a free port, a temporary folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from spiral_tasks.testing.celery_worker import CeleryProcess
from tests.ops.manifests import ROOT, Resource, find

#: What the image's ENV sets (Dockerfile: PATH="/app/.venv/bin:$PATH").
IMAGE_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined
    reference is left as written, `$$` is a literal `$`."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _REFERENCE.sub(replace, text)


class ContainerProcess(CeleryProcess):
    """A container's command line (a script, not only celery) run from the image's
    WORKDIR, logged, signalled and stopped as the tests' Celery processes are."""

    def start(self) -> ContainerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        return self


class Pod:
    """The one container of workload `kind/name`, as pod `pod_name`.

    `secrets` holds the Secrets' data (name -> key -> value) the operator would have
    created; `overrides` replaces variables whose pod values name things this host
    shares with other tests (a port, a mounted folder); `ports` maps the container's
    ports to the host ports its overrides made it use.
    """

    def __init__(self, kind: str, name: str, pod_name: str,
                 secrets: Mapping[str, Mapping[str, str]],
                 overrides: Mapping[str, str] | None = None,
                 ports: Mapping[int, int] | None = None) -> None:
        manifest = find(kind, name)
        [self.spec] = manifest.containers
        self.pod_name = pod_name
        self.secrets = secrets
        self.ports = dict(ports or {})
        self.env = self._environment(dict(overrides or {}))

    def _environment(self, overrides: dict[str, str]) -> dict[str, str]:
        env = {"PATH": IMAGE_PATH, "HOSTNAME": self.pod_name}
        for source in self.spec.get("envFrom", []):
            if "secretRef" in source:
                env.update(self.secrets[source["secretRef"]["name"]])
            else:
                env.update(find("ConfigMap", source["configMapRef"]["name"]).body["data"])
        for variable in self.spec.get("env", []):
            env[variable["name"]] = self._value(variable, env)
        env.update(overrides)
        return env

    def _value(self, variable: Resource, env: Mapping[str, str]) -> str:
        if "value" in variable:
            return expand(str(variable["value"]), env)
        source: Resource = variable["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name", source
            return self.pod_name
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            return self.secrets[ref["name"]][ref["key"]]
        ref = source["configMapKeyRef"]
        return str(find("ConfigMap", ref["name"]).body["data"][ref["key"]])

    @property
    def argv(self) -> list[str]:
        """The container's command and args, expanded."""
        return [expand(word, self.env)
                for word in [*self.spec.get("command", []), *self.spec.get("args", [])]]

    def probe(self, kind: str = "livenessProbe",
              env: Mapping[str, str] | None = None) -> bool:
        """Run the container's probe once as the kubelet does: an exec probe passes on
        exit 0 within timeoutSeconds, an httpGet probe on a status from 200 to 399.
        `env` overrides variables for this run only."""
        probe: Resource = self.spec[kind]
        timeout = float(probe.get("timeoutSeconds", 1))
        if "exec" in probe:
            try:
                done = subprocess.run(probe["exec"]["command"], cwd=ROOT,
                                      env={**self.env, **(env or {})}, timeout=timeout,
                                      capture_output=True, check=False)
            except subprocess.TimeoutExpired:
                return False
            return done.returncode == 0
        status, _ = self.http_get(probe["httpGet"]["path"], probe["httpGet"]["port"],
                                  timeout=timeout)
        return status in range(200, 400)

    def http_get(self, path: str, port: int | str, timeout: float = 5,
                 headers: Mapping[str, str] | None = None) -> tuple[int | None, str]:
        """The status and body of GET `path` on the container's `port` (a number or a
        port's name); no status when nothing answers."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.host_port(port)}{path}", headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status: int = response.status
                return status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, ""
        except (urllib.error.URLError, OSError):
            return None, ""

    def host_port(self, port: int | str) -> int:
        if isinstance(port, str):
            port = next(p["containerPort"] for p in self.spec["ports"] if p["name"] == port)
        return self.ports.get(port, port)


@contextmanager
def running(pod: Pod, workdir: Path) -> Iterator[ContainerProcess]:
    """The pod's container, started; stopped (SIGTERM, as the kubelet stops it) at
    the end."""
    process = ContainerProcess(pod.argv, pod.env, workdir, pod.pod_name).start()
    try:
        yield process
    finally:
        process.stop()


def describe(process: ContainerProcess) -> str:
    """What a wait on a container reports when it times out: its log's end."""
    return f"{process.args}: log ends with:\n{process.log()[-2000:]}"
