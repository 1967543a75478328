"""The Lua scripts the Redis backend and the Redis coordinator run, kept as files.

A line `--@include <name>` is replaced by the file `<name>.lua` of the script's own
folder or, failing that, of this one, so a piece two scripts share (applying a batch
of writes; reading what a locked section needs) is written once.
"""

from __future__ import annotations

import re
from importlib.resources import files

_INCLUDE = re.compile(r"^--@include (\w+)$", re.MULTILINE)


def _read(package: str, name: str) -> str:
    return (files(package) / f"{name}.lua").read_text(encoding="utf-8")


def _include(package: str, name: str) -> str:
    try:
        return _read(package, name)
    except FileNotFoundError:
        return _read(__package__, name)


def load(name: str, package: str = __package__) -> str:
    """The source of `<name>.lua` in `package`, its includes resolved from `package`,
    then from here."""
    return _INCLUDE.sub(lambda m: _include(package, m.group(1)), _read(package, name))
