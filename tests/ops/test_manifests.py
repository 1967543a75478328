"""The Kubernetes manifests against the API's OpenAPI schemas and against what the
runbook and the deployment need. No cluster: kubernetes-validate bundles the schemas."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.ops.manifests import (
    KUBERNETES,
    KUSTOMIZATION,
    OUR_IMAGE,
    Manifest,
    container,
    documented_secrets,
    find,
    kustomization,
    manifest_files,
    manifests,
    secret_references,
)

#: The oldest Kubernetes release still maintained upstream when these were written,
#: and the newest whose schemas kubernetes-validate bundles.
VERSIONS = ["1.33.0", latest_version()]
MANIFESTS = manifests()
WORKLOADS = [m for m in MANIFESTS if m.pod_spec is not None]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS, ids=str)
def test_every_document_is_valid_against_the_api_schema(manifest: Manifest,
                                                        version: str) -> None:
    # strict: a misspelt or misplaced field (the runbook's backoffLimit inside the pod
    # spec) is an error, not silently dropped.
    kubernetes_validate.validate(manifest.body, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_documented_secrets_are_valid_secrets(version: str) -> None:
    for name, keys in documented_secrets().items():
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": name, "namespace": "spiral"},
                  "type": "Opaque", "stringData": dict.fromkeys(keys, "x")}
        kubernetes_validate.validate(secret, version, strict=True)


def test_kustomization_lists_every_manifest_but_the_manual_job() -> None:
    listed = {KUBERNETES / resource for resource in kustomization()["resources"]}
    assert all(path.is_file() for path in listed)
    assert listed == {p for p in manifest_files() if p.parent == KUBERNETES}
    assert kustomization()["namespace"] == "spiral"
    assert find("Namespace", "spiral")
    # The manual Job runs only when created by hand, each time under a new name.
    manual = find("Job", "spiral-repair-manual-")
    assert manual.path.parent == KUBERNETES / "manual"
    assert manual.body["metadata"]["namespace"] == "spiral"


def test_every_secret_read_is_created_by_the_runbook() -> None:
    """No Secret (placeholders) is applied with the manifests, so an apply never
    overwrites real credentials: the runbook creates them, and must create every one
    the workloads read, with every key they read."""
    assert not [m for m in MANIFESTS if m.kind == "Secret"]
    documented = documented_secrets()
    assert documented["spiral-secrets"] == {"REDIS_URL", "SPIRAL_SIGIL_SECRET"}
    for manifest in WORKLOADS:
        for name, key in secret_references(manifest):
            assert name in documented, f"{manifest} reads Secret {name}"
            if key is not None:
                assert key in documented[name], f"{manifest} reads {name}.{key}"


@pytest.mark.parametrize("manifest", WORKLOADS, ids=str)
def test_every_container_has_requests_within_limits(manifest: Manifest) -> None:
    for spec in manifest.containers:
        resources = spec["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, (manifest, spec["name"], resource)


@pytest.mark.parametrize("manifest", WORKLOADS, ids=str)
def test_pods_run_unprivileged_without_service_links(manifest: Manifest) -> None:
    pod = manifest.pod_spec
    assert pod is not None
    # A Service named like a program's option prefix (flower -> FLOWER_PORT=tcp://...)
    # would otherwise configure it.
    assert pod["enableServiceLinks"] is False
    # runAsNonRoot alone cannot be checked against the image's USER nobody (a name):
    # the kubelet refuses to start it. A number can.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    for spec in manifest.containers:
        assert spec["securityContext"]["allowPrivilegeEscalation"] is False
        if spec["image"] == OUR_IMAGE:
            assert spec["imagePullPolicy"] == "IfNotPresent"  # a locally built image


def test_worker_is_scraped_on_its_named_metrics_port() -> None:
    template = find("Deployment", "spiral-worker").body["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    worker = container("Deployment", "spiral-worker")
    ports = {port["name"]: port["containerPort"] for port in worker["ports"]}
    env = {variable["name"]: variable for variable in worker["env"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    assert env["METRICS_PORT"]["value"] == str(ports["metrics"])
    # Multiprocess mode under prefork: a writable folder of the pod's own.
    folder = env["PROMETHEUS_MULTIPROC_DIR"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[folder]]


def test_worker_node_is_named_after_its_pod_and_the_probe_pings_only_it() -> None:
    worker = container("Deployment", "spiral-worker")
    env = {variable["name"]: variable for variable in worker["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    args = worker["args"]
    assert args[args.index("-n") + 1] == "w@$(POD_NAME)"
    probe = worker["livenessProbe"]
    script = probe["exec"]["command"]
    assert script[:2] == ["sh", "-c"]  # probes get no $(VAR) expansion: the shell does it
    assert 'inspect ping -d "w@$POD_NAME"' in script[2]
    # No reply within --timeout fails the probe, well before the kubelet's timeout.
    timeout = re.search(r"--timeout (\d+)", script[2])
    assert timeout is not None
    assert 0 < int(timeout.group(1)) < probe["timeoutSeconds"]


@pytest.mark.parametrize("name", ["spiral-worker", "spiral-beat", "spiral-flower"])
def test_every_deployment_has_a_liveness_probe(name: str) -> None:
    probe = container("Deployment", name)["livenessProbe"]
    assert probe["timeoutSeconds"] < probe["periodSeconds"]
    assert probe["failureThreshold"] >= 3


def test_flower_is_served_on_its_named_port_behind_basic_auth() -> None:
    flower = container("Deployment", "spiral-flower")
    env = {variable["name"]: variable for variable in flower["env"]}
    ports = {port["name"]: port["containerPort"] for port in flower["ports"]}
    assert ports["http"] == 5555 == int(env["FLOWER_PORT"]["value"])
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == "spiral-flower"
    assert flower["livenessProbe"]["httpGet"]["port"] == "http"
    service = find("Service", "spiral-flower").body["spec"]
    pod_labels = find("Deployment", "spiral-flower").body["spec"]["template"]["metadata"]
    assert service["selector"].items() <= pod_labels["labels"].items()
    assert service["ports"][0]["targetPort"] == "http"


def test_beat_runs_twice_for_availability() -> None:
    assert find("Deployment", "spiral-beat").body["spec"]["replicas"] == 2


def test_nightly_repair_is_the_runbooks_cronjob() -> None:
    cronjob = find("CronJob", "spiral-repair").body["spec"]
    assert cronjob["schedule"] == "0 2 * * *"
    assert cronjob["timeZone"] == "Etc/UTC"
    assert cronjob["concurrencyPolicy"] == "Forbid"
    assert cronjob["successfulJobsHistoryLimit"] == 3
    assert cronjob["failedJobsHistoryLimit"] == 1
    job = cronjob["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 3
    assert job["template"]["spec"]["restartPolicy"] == "OnFailure"
    repair = container("CronJob", "spiral-repair")
    assert repair["command"] == ["spiral", "repair"]
    assert repair["resources"] == {"requests": {"memory": "256Mi", "cpu": "100m"},
                                   "limits": {"memory": "512Mi", "cpu": "500m"}}


def test_manual_repair_is_the_runbooks_job() -> None:
    job = find("Job", "spiral-repair-manual-").body["spec"]
    assert job["backoffLimit"] == 1
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    repair = container("Job", "spiral-repair-manual-")
    assert repair["command"] == ["spiral", "repair", "--verbose"]


def test_redis_keeps_its_data_and_never_evicts() -> None:
    statefulset = find("StatefulSet", "spiral-redis")
    spec = statefulset.body["spec"]
    redis = container("StatefulSet", "spiral-redis")
    command = redis["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert quantity(options["--maxmemory"].replace("mb", "Mi")) < quantity(
        redis["resources"]["limits"]["memory"])
    claim = spec["volumeClaimTemplates"][0]
    assert {"name": claim["metadata"]["name"], "mountPath": options["--dir"]} in \
        redis["volumeMounts"]
    assert spec["serviceName"] == find("Service", "spiral-redis").name
    assert "managed Redis" in statefulset.path.read_text()


def test_kustomization_is_not_checked_as_a_resource() -> None:
    assert KUSTOMIZATION not in manifest_files()
    assert all(path.suffix == ".yaml" for path in manifest_files())
    assert not [p for p in KUBERNETES.rglob("*.yml")], "use .yaml"


def quantity(text: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "2", "256Mi", "1Gi") as a plain number. The
    schemas accept any string here; the API server does not."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", str(text))
    assert match is not None, f"not a quantity: {text!r}"
    factor = {None: 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9,
              "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return Decimal(match.group(1)) * factor[match.group(2)]


def test_quantity_reads_what_the_manifests_use() -> None:
    assert quantity("500m") == Decimal("0.5")
    assert quantity("1Gi") == 1024 * quantity("1Mi")
    with pytest.raises(AssertionError):
        quantity("lots")
