"""Where `celery -A spiral_tasks` looks for the app."""

from spiral_tasks.tasks.app import app

__all__ = ["app"]
