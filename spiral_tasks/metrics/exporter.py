"""A worker node's `/metrics` endpoint: every process of the node, added up.

It runs in the node's main process (a thread of prometheus_client's WSGI server),
which outlives the prefork children whose samples it serves; a child that dies keeps
its counts, a restarted node starts from zero.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from spiral_tasks.config import MetricsSettings
from spiral_tasks.metrics import folder as shared
from spiral_tasks.metrics.folder import ClaimedFolder

log = logging.getLogger(__name__)


class MetricsUnavailable(RuntimeError):
    """The endpoint cannot be served as configured; the message says what to change."""


@dataclass
class Exporter:
    port: int
    folder: ClaimedFolder
    _server: WSGIServer

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.folder.release()


def start(settings: MetricsSettings) -> Exporter | None:
    """Serve this node's metrics as `settings` say; None when `METRICS_PORT` is 0."""
    if settings.port == 0:
        return None
    path = (Path(settings.multiproc_dir) if settings.multiproc_dir
            else shared.default_folder(settings.port))
    try:
        claimed = shared.claim(path)
    except shared.FolderInUse as exc:
        if settings.multiproc_dir:
            raise MetricsUnavailable(str(exc)) from None
        raise port_in_use(settings.port) from None
    except OSError as exc:
        raise MetricsUnavailable(f"{shared.VARIABLE} {path} cannot be used: "
                                 f"{exc.strerror}") from None
    shared.ensure_multiprocess(path)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    try:
        server, _ = start_http_server(settings.port, registry=registry)
    except OSError as exc:
        claimed.release()
        if exc.errno == errno.EADDRINUSE:
            raise port_in_use(settings.port) from None
        raise MetricsUnavailable(f"METRICS_PORT {settings.port}: {exc.strerror}") from None
    log.info("metrics: http://0.0.0.0:%d/metrics (samples shared through %s)",
             settings.port, path)
    return Exporter(settings.port, claimed, server)


def port_in_use(port: int) -> MetricsUnavailable:
    return MetricsUnavailable(f"METRICS_PORT {port} is in use (another worker node on "
                              "this host?): give each node its own METRICS_PORT, or 0 "
                              "for none")
