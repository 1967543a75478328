"""What can be checked of the deployment files without a Docker engine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from flower.options import default_options as flower_options

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "workers").glob("*.sh"))
#: Where each worker node serves its metrics (METRICS_PORT's default).
METRICS_PORT = "9099"
#: Where compose publishes the ports of ours on the host.
LOOPBACK = "127.0.0.1"
#: A variable read by a script or interpolated by compose: ${NAME...}; or by Python.
SHELL_VARIABLE = r"\$\{([A-Z][A-Z0-9_]*)"
PYTHON_VARIABLE = r"environ(?:\.get\(|\[)\"([A-Z][A-Z0-9_]*)\""


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def app_services() -> dict[str, dict[str, Any]]:
    """The services built from this folder (all but Redis)."""
    return {name: s for name, s in compose()["services"].items() if "build" in s}


def node_option(command: list[str]) -> str:
    return command[command.index("-n") + 1]


def test_compose_file_parses_and_runs_only_our_scripts() -> None:
    services = app_services()
    assert set(services) == {"worker-1", "worker-2", "beat-1", "beat-2", "flower"}
    for service in services.values():
        script = ROOT / service["command"][0]
        assert script.is_file()
        assert os.access(script, os.X_OK)
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:")


def test_every_service_has_a_healthcheck_of_its_own_kind() -> None:
    """Redis answers PING; each of ours runs workers/healthcheck.py for what its
    script starts: a worker with the node name it runs as, Flower on its port."""
    services = compose()["services"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name, service in app_services().items():
        check = service["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "workers/healthcheck.py"], name
        assert (ROOT / check[2]).is_file()
        kind = Path(service["command"][0]).stem
        assert check[3] == kind, name
        if kind == "worker":
            assert check[4:] == [node_option(service["command"])], name
        elif kind == "flower":
            assert service["ports"] == [f"{LOOPBACK}:{check[4]}:{check[4]}"]
        else:
            assert check[4:] == [], name
    nodes = [node_option(s["command"]) for s in app_services().values()
             if s["command"][0] == "workers/worker.sh"]
    assert len(set(nodes)) == len(nodes) == 2


def test_each_worker_publishes_its_metrics_on_a_host_port_of_its_own() -> None:
    """On the host's loopback only: the metrics name tenants and ask no password."""
    workers = [s for s in app_services().values() if s["command"][0] == "workers/worker.sh"]
    published = [port.split(":") for s in workers for port in s["ports"]]
    assert [inside for _, _, inside in published] == [METRICS_PORT] * len(workers)
    assert {address for address, _, _ in published} == {LOOPBACK}
    assert len({host for _, host, _ in published}) == len(workers)


def test_redis_runs_as_the_readme_recommends() -> None:
    command = compose()["services"]["redis"]["command"]
    readme = (ROOT / "README.md").read_text()
    for flag, value in [("--maxmemory-policy", "noeviction"), ("--appendonly", "yes"),
                        ("--appendfsync", "everysec")]:
        assert command[command.index(flag) + 1] == value
        assert f"{flag} {value}" in readme, flag


def readme_variables() -> set[str]:
    """The variables of the README's configuration table."""
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", (ROOT / "README.md").read_text(),
                          re.MULTILINE))


def test_every_variable_the_deployment_reads_is_in_the_readme_table() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    interpolated = set(re.findall(SHELL_VARIABLE, text))
    set_in_services = {name for s in app_services().values() for name in s["environment"]}
    scripts = " ".join(path.read_text() for path in (ROOT / "workers").iterdir()
                       if path.suffix in {".sh", ".py"})
    read = (interpolated | set_in_services | set(re.findall(SHELL_VARIABLE, scripts))
            | set(re.findall(PYTHON_VARIABLE, scripts)))
    assert {"SPIRAL_SIGIL_SECRET", "FLOWER_BASIC_AUTH", "REDIS_URL"} <= read
    assert read <= readme_variables(), read - readme_variables()


def test_compose_refuses_to_start_without_the_secrets_the_readme_names() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    readme = (ROOT / "README.md").read_text()
    for variable in ("SPIRAL_SIGIL_SECRET", "FLOWER_BASIC_AUTH"):
        assert f"${{{variable}:?set {variable}}}" in text
        row = re.search(rf"^\| `{variable}` \|.*$", readme, re.MULTILINE)
        assert row is not None
        assert "required by `docker-compose.yml`" in row.group(0), variable


def test_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def flower_takes(option: str) -> bool:
    """Flower's options are Tornado's, defined in flower.options (`celery flower
    --help` does not list them)."""
    return option.removeprefix("--") in flower_options


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_worker_scripts_are_valid_and_run_real_commands(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    command = re.search(r"exec celery -A spiral_tasks (\w+)", script.read_text())
    assert command is not None
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}
    help_text = subprocess.run([sys.executable, "-m", "celery", "-A", "spiral_tasks",
                                command.group(1), "--help"], capture_output=True,
                               text=True, env=env, timeout=60, check=False)
    assert help_text.returncode == 0, help_text.stderr
    for option in re.findall(r" (--[a-z_-]+)", script.read_text()):
        if command.group(1) == "flower":
            assert flower_takes(option), option
        else:
            assert option in help_text.stdout, option


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_celery_commands_name_bad_settings_in_one_line_each(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPIRAL_", "REDIS_"))}
    env.update(REDIS_URL="redis://127.0.0.1:6379/0/0", SPIRAL_VISIBILITY_TIMEOUT_S="1h")
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "spiral_tasks", command],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "spiral-tasks: bad settings:",
        "  REDIS_URL='redis://127.0.0.1:6379/0/0': the path must be a database number such "
        "as /0, got '/0/0'",
        "  SPIRAL_VISIBILITY_TIMEOUT_S='1h': expected a whole number"]
