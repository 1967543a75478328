"""The Kubernetes manifests under ops/kubernetes/, read as the API server would get them,
and the Secrets ops/RUNBOOK.md tells the operator to create by hand.

One place knows where a kind keeps its pod spec, so every check walks every container
of every workload the same way.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "ops" / "kubernetes"
KUSTOMIZATION = KUBERNETES / "kustomization.yaml"
RUNBOOK = ROOT / "ops" / "RUNBOOK.md"
#: The image built from the repository's Dockerfile; containers of other images (Redis)
#: run no command of ours.
OUR_IMAGE = "spiral-tasks:latest"

Resource = dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    """One document of one manifest file."""

    path: Path
    body: Resource

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        metadata = self.body["metadata"]
        return str(metadata.get("name") or metadata["generateName"])

    def __str__(self) -> str:
        return f"{self.path.relative_to(KUBERNETES)}:{self.kind}/{self.name}"

    @property
    def pod_spec(self) -> Resource | None:
        """The pod spec this resource runs, if it runs pods."""
        spec = self.body.get("spec", {})
        if self.kind == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if self.kind in {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}:
            pod: Resource = spec["template"]["spec"]
            return pod
        return None

    @property
    def containers(self) -> list[Resource]:
        pod = self.pod_spec
        if pod is None:
            return []
        return [*pod.get("initContainers", []), *pod["containers"]]


def manifest_files() -> list[Path]:
    """Every manifest file (the kustomization is a kustomize file, not a resource)."""
    return sorted(p for p in KUBERNETES.rglob("*.yaml") if p != KUSTOMIZATION)


def manifests() -> list[Manifest]:
    return [Manifest(path, body) for path in manifest_files()
            for body in yaml.safe_load_all(path.read_text()) if body]


def find(kind: str, name: str) -> Manifest:
    found = [m for m in manifests() if m.kind == kind and m.name == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(kind: str, name: str) -> Resource:
    """The one container of a workload."""
    containers = find(kind, name).containers
    assert len(containers) == 1, f"{kind}/{name} has {len(containers)} containers"
    return containers[0]


def kustomization() -> Resource:
    loaded: Resource = yaml.safe_load(KUSTOMIZATION.read_text())
    return loaded


def documented_secrets() -> dict[str, set[str]]:
    """The Secrets ops/RUNBOOK.md creates (`kubectl ... create secret generic NAME
    --from-literal=KEY=...`): name -> keys."""
    text = RUNBOOK.read_text().replace("\\\n", " ")
    secrets: dict[str, set[str]] = {}
    for line in text.splitlines():
        if "create secret generic" not in line:
            continue
        words = shlex.split(line)
        name = words[words.index("generic") + 1]
        secrets[name] = {m.group(1) for w in words
                         if (m := re.match(r"--from-literal=([A-Za-z_][A-Za-z0-9_]*)=", w))}
    return secrets


def secret_references(manifest: Manifest) -> set[tuple[str, str | None]]:
    """(secret name, key) for each Secret a workload reads; key None for a whole
    Secret (envFrom)."""
    references: set[tuple[str, str | None]] = set()
    for spec in manifest.containers:
        for source in spec.get("envFrom", []):
            if "secretRef" in source:
                references.add((source["secretRef"]["name"], None))
        for variable in spec.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                references.add((ref["name"], ref["key"]))
    for volume in (manifest.pod_spec or {}).get("volumes", []):
        if "secret" in volume:
            references.add((volume["secret"]["secretName"], None))
    return references
