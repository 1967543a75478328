"""The Celery app. `celery -A spiral_tasks worker|beat|flower` finds it (through
`spiral_tasks.celery`)."""

from __future__ import annotations

from collections.abc import Mapping

from celery import Celery

from spiral_tasks.config import Settings, current
from spiral_tasks.tasks import results
from spiral_tasks.tasks.config import celery_config


def create_app(env: Mapping[str, str] | None = None) -> Celery:
    """An app configured from `env` (default: this process's settings). Producers can
    make their own with another environment; workers use `app` below."""
    settings = current() if env is None else Settings.from_env(env)
    app = Celery("spiral_tasks", include=["spiral_tasks.tasks.tasks"])
    app.config_from_object(celery_config(settings))
    # Redis results in one round trip (spiral_tasks/tasks/results.py), for this app only.
    app.loader.override_backends = {"redis": results.BACKEND, "rediss": results.BACKEND}
    embedded_dir = settings.tasks.embedded_dir

    @app.on_after_configure.connect(weak=False)
    def _make_folder(**_: object) -> None:
        # Only once the app is used: importing it must not create folders. Beat's
        # schedule file is there; the SQLite files make their own folders.
        if embedded_dir is not None:
            embedded_dir.mkdir(parents=True, exist_ok=True)

    return app


app = create_app()
