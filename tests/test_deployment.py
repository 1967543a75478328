"""What can be checked of the deployment files without a Docker engine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "workers").glob("*.sh"))


def test_compose_file_parses_and_runs_only_our_scripts() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app_services = {name: s for name, s in compose["services"].items() if "build" in s}
    assert set(app_services) == {"worker-1", "worker-2", "beat-1", "beat-2"}
    for service in app_services.values():
        script = ROOT / service["command"][0]
        assert script.is_file()
        assert os.access(script, os.X_OK)
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:")


def test_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


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
    for option in re.findall(r" (--[a-z-]+)", script.read_text()):
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
