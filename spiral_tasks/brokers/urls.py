"""The `spiral-sqlite://` URLs of the embedded broker and result backend."""

from __future__ import annotations

from pathlib import Path

SCHEME = "spiral-sqlite"


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite file at `path` (made absolute)."""
    return f"{SCHEME}://{path.resolve()}"


def database_path(url: str) -> Path:
    """The file a `spiral-sqlite://<path>` URL names: everything after `://`, so
    `spiral-sqlite:///var/lib/x.sqlite3` is absolute and `spiral-sqlite://x.sqlite3`
    relative to the working directory."""
    scheme, separator, path = url.partition("://")
    if scheme != SCHEME or not separator or not path:
        raise ValueError(f"{url!r}: expected {SCHEME}://<path of an SQLite file>, e.g. "
                         f"{SCHEME}:///var/lib/spiral/broker.sqlite3")
    return Path(path)
