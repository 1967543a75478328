"""Every command the manifests run, and every command ops/RUNBOOK.md tells an operator
to type, exists in this repository with the options it is given: console scripts of
pyproject.toml, scripts under workers/, `celery -A spiral_tasks` subcommands (and
inspect actions). Every variable the manifests set is read by something."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flower.options import options as flower_options

from spiral_tasks.tasks.app import app
from tests.ops.manifests import OUR_IMAGE, ROOT, RUNBOOK, find, manifests

PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
#: Settings are checked when the app is imported: any valid URL will do for --help.
HELP_ENV = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}
#: Programs of the Redis image and of the operator's machine, not of this repository.
NOT_OURS = {"kubectl", "kind", "minikube", "kustomize", "docker", "redis-cli",
            "redis-server", "curl", "openssl", "mkdir", "cp", "rm", "export", "jq",
            "chmod", "printf", "grep"}


def manifest_commands() -> Iterator[tuple[str, list[str]]]:
    """(where, argv) of every command and exec probe of a container of our image."""
    for manifest in manifests():
        for spec in manifest.containers:
            if spec["image"] != OUR_IMAGE:
                continue
            where = f"{manifest}:{spec['name']}"
            yield where, [*spec.get("command", []), *spec.get("args", [])]
            for kind in PROBES:
                if "exec" in spec.get(kind, {}):
                    yield f"{where}:{kind}", spec[kind]["exec"]["command"]


def runbook_commands() -> Iterator[tuple[str, list[str]]]:
    """(where, argv) of every line of a ```bash block of the runbook that runs one of
    our programs (after variable assignments and `python3 -m uv run --frozen`)."""
    text = RUNBOOK.read_text().replace("\\\n", " ")
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for text_line in block.splitlines():
            line = text_line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            words = first_command(line)
            if words[:1] == ["kubectl"] and "--" in words:  # kubectl exec ... -- command
                words = words[words.index("--") + 1:]
            if words and words[0] not in NOT_OURS:
                yield f"RUNBOOK: {line}", words


def first_command(line: str) -> list[str]:
    """The words of a shell line's first simple command, without its variable
    assignments and `python3 -m uv run --frozen`: up to the first pipe, redirection,
    `;`, `&&` or `$(`."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    for word in lexer:
        if set(word) <= set("();<>|&") or "$(" in word:
            break
        words.append(word)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words.pop(0)
    if words[:4] == ["python3", "-m", "uv", "run"]:
        words = [w for w in words[4:] if w != "--frozen"]
    return words


COMMANDS = [*manifest_commands(), *runbook_commands()]


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_exists_with_its_options(where: str, argv: list[str]) -> None:
    check(argv)


def test_commands_were_found() -> None:
    programs = {argv[0] for _, argv in COMMANDS}
    assert {"workers/worker.sh", "workers/beat.sh", "spiral", "celery", "sh"} <= programs


def check(argv: list[str]) -> None:
    program = argv[0]
    if program in {"sh", "bash"} and argv[1] == "-c":
        assert subprocess.run([program, "-n", "-c", argv[2]], check=False).returncode == 0
        words = shlex.split(argv[2])
        check(words[1:] if words[0] == "exec" else words)
    elif program == "python" and argv[1] == "-c":
        compile(argv[2], "<probe>", "exec")
    elif program.startswith("workers/"):
        check_script(program, argv[1:])
    elif program == "celery":
        assert argv[1:3] == ["-A", "spiral_tasks"], argv
        check_celery(argv[3], argv[4:])
    else:
        assert program in console_scripts(), f"{program}: not a console script of pyproject.toml"
        command, helped = [program], ""
        for word in argv[1:3]:  # a subcommand, and one of its own if it is a group
            if word.startswith("-") or (helped and "\nCommands:" not in helped):
                break
            command.append(word)
            helped = help_text(tuple(command))
        assert_options(helped or help_text((program,)), argv[1:])


def console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts]: name -> entry point."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    scripts: dict[str, str] = project.get("scripts", {})
    return scripts


def check_script(script: str, arguments: list[str]) -> None:
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    command = re.search(r"exec celery -A spiral_tasks (\w+)", path.read_text())
    assert command is not None, f"{script} runs no celery command"
    check_celery(command.group(1), arguments)


def check_celery(subcommand: str, arguments: list[str]) -> None:
    assert_options(help_text(("celery", "-A", "spiral_tasks", subcommand)), arguments)
    if subcommand in {"inspect", "control"}:
        action = next(a for a in arguments if not a.startswith("-"))
        listing = help_text(("celery", "-A", "spiral_tasks", subcommand, "--list"), "")
        assert re.search(rf"^  {action}\b", listing, flags=re.MULTILINE), action
    if subcommand == "call":
        task = next(a for a in arguments if not a.startswith("-"))
        app.loader.import_default_modules()
        assert task in app.tasks, f"no task {task}"


def assert_options(help_output: str, arguments: list[str]) -> None:
    for word in arguments:
        if word.startswith("-") and word != "-":
            option = word.split("=")[0]
            assert re.search(rf"(^|[\s,]){re.escape(option)}\b", help_output), \
                f"{option} is not an option:\n{help_output}"


@functools.cache
def help_text(command: tuple[str, ...], flag: str = "--help") -> str:
    executable = Path(sys.executable).parent / command[0]
    done = subprocess.run([str(executable), *command[1:], *([flag] if flag else [])],
                          capture_output=True, text=True, env=HELP_ENV, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_variable_set_is_read_by_something() -> None:
    """A misspelt variable is silently ignored: each one the manifests set must be read
    by our package or scripts, by Flower (FLOWER_*, its options), or by
    prometheus_client (PROMETHEUS_MULTIPROC_DIR)."""
    sources = "\n".join(p.read_text() for p in [*(ROOT / "spiral_tasks").rglob("*.py"),
                                                 *(ROOT / "workers").glob("*.sh")])
    names = set(find("ConfigMap", "spiral-config").body["data"])
    for manifest in manifests():
        for spec in manifest.containers:
            names |= {variable["name"] for variable in spec.get("env", [])}
    for name in names:
        if name.startswith("FLOWER_"):
            # As Flower reads them (flower/command.py apply_env_options); tornado keeps
            # option names with dashes.
            option = name.removeprefix("FLOWER_").lower().replace("_", "-")
            assert option in flower_options._options, name
        elif name == "POD_NAME":  # the worker's node name and its probe
            assert "$(POD_NAME)" in str(find("Deployment", "spiral-worker").body), name
        else:
            assert re.search(rf"\b{name}\b", sources), f"nothing reads {name}"
