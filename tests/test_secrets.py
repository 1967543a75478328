"""Secrets kept out of what every program prints: its `--help`, and its message when a
setting is bad or the password wrong. Real programs, real processes, each run with
known secrets in its environment, and all they printed searched for them. (What a
running deployment prints, serves and stores is searched in
tests/tasks/test_transport.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spiral_tasks.cli.main import spiral as spiral_group
from spiral_tasks.testing.celery_worker import CeleryProcess, worker_env
from spiral_tasks.testing.redis_server import RedisServer
from spiral_tasks.testing.waiting import wait_until
from tests.cli.programs import SCRIPTS, one_line, spiral
from tests.scripts import HEALTHCHECK, SCRIPT, healthcheck, script_env

REDIS_PASSWORD = "redis-pw-a41c07"
SIGIL_SECRET = "sigil-secret-9e2d15"
FLOWER_PASSWORD = "flower-pw-6b0f3a"
#: An encryption key (base64 of 32 bytes), and a malformed one that still looks secret.
ENCRYPTION_KEY = "ZW5jcnlwdGlvbi1rZXktZm9yLXRoZS10ZXN0cy0zMmI="
BAD_KEY = "bad-key-material-5f2c91"
SECRETS = (REDIS_PASSWORD, SIGIL_SECRET, FLOWER_PASSWORD, ENCRYPTION_KEY, BAD_KEY)
#: Valid settings whose Redis does not answer (port 1): --help must not need it.
WITH_SECRETS = {"REDIS_URL": f"redis://spiral:{REDIS_PASSWORD}@127.0.0.1:1/0",
                "SPIRAL_SIGIL_SECRET": SIGIL_SECRET,
                "FLOWER_BASIC_AUTH": f"ops:{FLOWER_PASSWORD}",
                "SPIRAL_ENCRYPTION_KEY": ENCRYPTION_KEY}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret} printed in:\n{text}"


def helps() -> list[list[str]]:
    """Every program's --help: the `spiral` group and each subcommand, the console
    scripts, the celery commands the deployment runs, workers/flower.sh."""
    spiral = str(SCRIPTS / "spiral")
    celery = [str(SCRIPTS / "celery"), "-A", "spiral_tasks"]
    return [[spiral, "--help"],
            *([spiral, name, "--help"] for name in spiral_group.commands),
            *([str(SCRIPTS / program), "--help"]
              for program in ("spiral-demo", "spiral-enqueue", "spiral-repair")),
            *([*celery, command, "--help"]
              for command in ("worker", "beat", "flower", "inspect", "purge")),
            [*celery, "flower", "--", "--help"],
            [str(SCRIPT), "--help"]]


@pytest.mark.parametrize("argv", helps(), ids=lambda argv: " ".join(
    Path(argv[0]).name if n == 0 else word for n, word in enumerate(argv)))
def test_no_help_shows_a_secret(argv: list[str], tmp_path: Path) -> None:
    shown = subprocess.run(argv, cwd=tmp_path, env=script_env(worker_env(None, **WITH_SECRETS)),
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "--" in shown.stdout + shown.stderr  # options were listed
    assert_no_secret(shown.stdout, shown.stderr)


def test_the_health_check_usage_shows_no_secret(tmp_path: Path) -> None:
    shown = healthcheck(script_env(worker_env(None, **WITH_SECRETS)), tmp_path)
    assert (shown.returncode, shown.stderr.strip()) == (
        2, "usage: healthcheck.py worker NODE | beat | flower [PORT]")
    assert HEALTHCHECK.exists()


BAD_SETTINGS = [
    {"REDIS_URL": f"redis://spiral:{REDIS_PASSWORD}@127.0.0.1:6379/0/0"},
    {"REDIS_URL": f"rediss://spiral:{REDIS_PASSWORD}@127.0.0.1:6380/0?ssl_ca_certs=/nowhere"},
    {"REDIS_URL": f"redis://spiral:{REDIS_PASSWORD}@127.0.0.1:6379/0?ssl_cert_reqs=required"},
    {"REDIS_URL": f"redis://spiral:12/{REDIS_PASSWORD}@127.0.0.1:6379/0"},
    {"SPIRAL_BROKER_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:port/0"},
    {"SPIRAL_RESULT_BACKEND": f"rediss://:{REDIS_PASSWORD}@127.0.0.1/0?ssl_certfile=/x"},
    {"SPIRAL_ENCRYPTION_KEY": BAD_KEY},
    {"SPIRAL_DECRYPTION_KEYS": f"{ENCRYPTION_KEY},{BAD_KEY}"},
]


#: Each bad setting through `spiral stats`; the first also through the other programs
#: (their settings are read by the same code: what differs is how they print it).
CASES = [*(("spiral stats", bad) for bad in BAD_SETTINGS),
         *((program, BAD_SETTINGS[1]) for program in ("celery worker", "celery beat",
                                                      "healthcheck beat"))]


@pytest.mark.parametrize(("program", "bad"), CASES,
                         ids=[f"{program}-{next(iter(bad))}" for program, bad in CASES])
def test_a_bad_setting_is_named_without_its_secret(bad: dict[str, str], program: str,
                                                   tmp_path: Path) -> None:
    env = script_env(worker_env(None, **{**WITH_SECRETS, **bad}))
    name, command = program.split()
    argv = {"spiral": [str(SCRIPTS / "spiral"), command],
            "celery": [str(SCRIPTS / "celery"), "-A", "spiral_tasks", command],
            "healthcheck": [sys.executable, str(HEALTHCHECK), command]}[name]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    variable = next(iter(bad))
    assert f"{variable}=" in done.stderr
    assert "Traceback" not in done.stderr
    assert_no_secret(done.stdout, done.stderr)


@pytest.fixture(scope="module")
def wrong_password_url(tls_redis: RedisServer) -> str:
    """A good URL of the TLS server, but for a user whose password is wrong."""
    return tls_redis.url_as("default", REDIS_PASSWORD)


@pytest.mark.parametrize("args", [["stats"], ["repair", "--dry-run"], ["enqueue"],
                                  ["backup", "--out", "b.jsonl"]])
def test_a_wrong_password_is_said_without_it(args: list[str], wrong_password_url: str,
                                             tmp_path: Path) -> None:
    done = spiral(tmp_path, *args, **{**WITH_SECRETS, "REDIS_URL": wrong_password_url})
    assert done.returncode == 1
    line = one_line(done)
    assert "rediss://default:***@127.0.0.1" in line or "the broker" in line, line
    assert_no_secret(done.stdout, done.stderr)


def test_a_worker_and_a_beat_with_a_wrong_password_log_no_secret(
        wrong_password_url: str, tmp_path: Path) -> None:
    env = worker_env(wrong_password_url, SPIRAL_SIGIL_SECRET=SIGIL_SECRET,
                     FLOWER_BASIC_AUTH=f"ops:{FLOWER_PASSWORD}")
    worker = CeleryProcess(["worker", "-P", "prefork", "-c", "1", "-n", "wrong@%h", "-l",
                            "DEBUG"], env, tmp_path, "worker").start()
    beat = CeleryProcess(["beat", "-l", "DEBUG"], env, tmp_path, "beat").start()
    try:
        for process in (worker, beat):
            wait_until(lambda p=process: "invalid username-password pair" in p.log(), 60,
                       interval=0.2, message=f"{process.name} to report the refused password")
    finally:
        worker.stop()
        beat.stop()
    checked = healthcheck(script_env(env), tmp_path, "beat")
    assert checked.returncode == 1
    assert "invalid username-password pair" in checked.stderr
    assert_no_secret(worker.log(), beat.log(), checked.stdout, checked.stderr)
