"""The Lua scripts the Redis backend and the Redis coordinator run, kept as files.

A line `--@include <name>` is replaced by the file `<name>.lua` of this folder, so a
piece two scripts share (applying a batch of writes) is written once.
"""

from __future__ import annotations

import re
from importlib.resources import files

_INCLUDE = re.compile(r"^--@include (\w+)$", re.MULTILINE)


def _read(package: str, name: str) -> str:
    return (files(package) / f"{name}.lua").read_text(encoding="utf-8")


def load(name: str, package: str = __package__) -> str:
    """The source of `<name>.lua` in `package`, its includes resolved from here."""
    return _INCLUDE.sub(lambda m: _read(__package__, m.group(1)), _read(package, name))
