"""Flower started exactly as workers/flower.sh starts it (the script itself runs, so its
auth check and its Flower options are what a test or a benchmark gets), and its HTTP API.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiral_tasks.testing.celery_worker import CeleryProcess
from spiral_tasks.testing.redis_server import free_port
from spiral_tasks.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "workers" / "flower.sh"
#: How long Flower may take to import the app and answer HTTP on a loaded machine.
STARTUP_S = 60.0


def script_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    """`env` with this interpreter's bin folder first on PATH, so the scripts' `celery`
    and `python` are the ones of this checkout."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "PATH": path, **extra}


@dataclass(frozen=True)
class Answer:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class FlowerProcess(CeleryProcess):
    """workers/flower.sh with extra Flower options (the port, the address)."""

    def command(self) -> list[str]:
        return [str(SCRIPT), *self.args]


@dataclass
class Flower:
    process: FlowerProcess
    port: int
    #: The `user:password` a request sends unless told otherwise.
    user: str

    def get(self, path: str, credentials: str | None = "") -> Answer:
        """GET `path`, with basic auth as `user:password` (None: without auth; by
        default, "", as `self.user`)."""
        if credentials == "":
            credentials = self.user
        headers = {}
        if credentials is not None:
            token = base64.b64encode(credentials.encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Answer(response.status, response.read().decode())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read().decode(errors="replace"))

    def api(self, path: str) -> Any:
        """The JSON of an authenticated GET that must succeed."""
        answer = self.get(path)
        assert answer.status == 200, (path, answer)
        return answer.json()

    def answers(self) -> bool:
        if self.process.process is None or self.process.process.poll() is not None:
            raise RuntimeError(f"Flower exited while starting:\n{self.process.log()}")
        return self.get("/healthcheck", None).status == 200


@contextmanager
def running_flower(env: dict[str, str], workdir: Path, users: str) -> Iterator[Flower]:
    """Flower on `env`'s broker with FLOWER_BASIC_AUTH=users, yielded once it answers
    HTTP (its API then answers the first user), stopped on exit whatever happened."""
    port = free_port()
    process = FlowerProcess([f"--port={port}", "--address=127.0.0.1"],
                            script_env(env, FLOWER_BASIC_AUTH=users), workdir, "flower")
    process.start()
    flower = Flower(process, port, users.split(",", maxsplit=1)[0])
    try:
        wait_until(flower.answers, STARTUP_S, interval=0.2, ignoring=(OSError,),
                   message=f"Flower to answer on port {port}")
        yield flower
    finally:
        process.stop()
