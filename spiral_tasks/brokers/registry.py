"""Registers the `spiral-sqlite` scheme with kombu (a transport) and Celery (a result
backend), on import. Both keep a table of aliases from URL scheme to class path
(`kombu.transport.TRANSPORT_ALIASES`, `celery.app.backends.BACKEND_ALIASES`) that
they consult whenever a connection or backend is made; adding to it is how a
third-party transport gets a scheme of its own. (kombu refuses class paths in URL
schemes, so an alias is the only way to name a transport in `broker_url`.)
"""

from celery.app.backends import BACKEND_ALIASES
from kombu.transport import TRANSPORT_ALIASES

from spiral_tasks.brokers.urls import SCHEME

TRANSPORT = "spiral_tasks.brokers.sqlite:Transport"
RESULT_BACKEND = "spiral_tasks.brokers.sqlite_results:SQLiteBackend"


def register() -> None:
    """Make `spiral-sqlite://` known to kombu and Celery (idempotent)."""
    TRANSPORT_ALIASES[SCHEME] = TRANSPORT
    BACKEND_ALIASES[SCHEME] = RESULT_BACKEND


register()
