"""Where `celery -A spiral_tasks` looks for the app.

A malformed setting stops the command here with one message naming each bad
variable, instead of Celery's "Unable to load celery application" and a traceback.
"""

import sys

from spiral_tasks.errors import ConfigError

try:
    from spiral_tasks.tasks.app import app
except ConfigError as exc:
    print(f"spiral-tasks: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

__all__ = ["app"]
