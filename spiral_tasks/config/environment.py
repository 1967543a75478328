"""Typed, validated reads of environment variables, with every problem collected.

A deployment with three bad variables should learn about all three at once, each
named with its value and what would be accepted, instead of fixing them one
traceback at a time. `Environment` reads; `check()` raises one `ConfigError` that
lists everything wrong.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from spiral_tasks.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)

#: How much of a bad value an error message quotes (a variable can hold a whole file).
QUOTE_LIMIT = 80
REDIS_SCHEMES = ("redis", "rediss", "unix")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def quote(value: str) -> str:
    shown = value if len(value) <= QUOTE_LIMIT else value[:QUOTE_LIMIT] + "..."
    return repr(shown)


class Environment:
    """Reads variables from `env`; a bad one is noted and its default returned, so all
    problems are found in one pass."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        """The variable's value, or None when it is unset or blank."""
        value = self._env.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def problem(self, name: str, value: str | None, why: str) -> None:
        shown = f"{name}={quote(value)}" if value is not None else name
        self.problems.append(f"{shown}: {why}")

    def secret_problem(self, name: str, why: str) -> None:
        """A problem with a secret: named, its value never shown."""
        self.problems.append(f"{name} (value hidden): {why}")

    def check(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def optional_text(self, name: str) -> str | None:
        return self.raw(name)

    def flag(self, name: str) -> bool:
        raw = (self.raw(name) or "").lower()
        if raw in _TRUE:
            return True
        if raw not in _FALSE:
            self.problem(name, raw, "expected 1/0, true/false, yes/no or on/off")
        return False

    def integer(self, name: str, default: int, minimum: int = 1,
                maximum: int | None = None) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problem(name, raw, "expected a whole number")
            return default
        return self._in_range(name, raw, value, minimum, maximum, default)

    def number(self, name: str, default: float, minimum: float = 0.0,
               maximum: float | None = None, unit: str = "") -> float:
        """A finite number above `minimum` (exclusive) and at most `maximum`."""
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            what = f"a number of {unit}" if unit else "a number"
            self.problem(name, raw, f"expected {what}, e.g. {default:g}")
            return default
        if not math.isfinite(value) or value <= minimum:
            self.problem(name, raw, f"must be a finite number above {minimum:g}")
            return default
        if maximum is not None and value > maximum:
            self.problem(name, raw, f"must be at most {maximum:g}")
            return default
        return value

    def choice(self, name: str, kind: type[E], default: E) -> E:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return kind(raw)
        except ValueError:
            choices = ", ".join(str(k.value) for k in kind)
            self.problem(name, raw, f"choose one of {choices}")
            return default

    def redis_url(self, name: str, default: str | None = None) -> str | None:
        raw = self.raw(name)
        if raw is None:
            return default
        why = redis_url_problem(raw)
        if why:
            self.problem(name, raw, why)
            return default
        return raw

    def fields(self, name: str, default: str, count: int) -> str:
        raw = self.raw(name) or default
        if len(raw.split()) != count:
            self.problem(name, raw, f"expected {count} space-separated fields")
            return default
        return raw

    def keys(self, name: str, size: int, *, many: bool) -> tuple[bytes, ...]:
        """Keys of `size` bytes, base64, from variable `name` or from the file
        `name`_FILE names (one or, with `many`, any number, separated by commas,
        spaces or lines). Setting both is a problem; a key is never quoted."""
        value, file_name = self.raw(name), name + "_FILE"
        path = self.raw(file_name)
        if value is not None and path is not None:
            self.problem(file_name, path, f"set {name} or {file_name}, not both")
            return ()
        source = name
        if path is not None:
            source = file_name
            try:
                value = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
                self.problem(file_name, path, f"cannot read the key file: {why}")
                return ()
        if value is None:
            return ()
        texts = value.replace(",", " ").split()
        if not texts or (len(texts) > 1 and not many):
            self.secret_problem(source, f"expected one key, found {len(texts)}")
            return ()
        found = []
        for number, text in enumerate(texts, start=1):
            key = decode_key(text)
            if key is None or len(key) != size:
                where = f"key {number}: " if len(texts) > 1 else ""
                self.secret_problem(source, f"{where}expected {size} random bytes in base64 "
                                            f"({4 * math.ceil(size / 3)} characters)")
                return ()
            found.append(key)
        return tuple(found)

    def _in_range(self, name: str, raw: str, value: int, minimum: int,
                  maximum: int | None, default: int) -> int:
        if value < minimum:
            self.problem(name, raw, f"must be at least {minimum}")
            return default
        if maximum is not None and value > maximum:
            self.problem(name, raw, f"must be at most {maximum}")
            return default
        return value


def decode_key(text: str) -> bytes | None:
    """The bytes of a base64 key (standard or URL-safe alphabet), or None."""
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


def redis_url_problem(url: str) -> str | None:
    """Why redis-py would refuse `url` (or misread it), or None when it is usable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in REDIS_SCHEMES:
        return (f"scheme must be one of {', '.join(s + '://' for s in REDIS_SCHEMES)}, "
                f"got {parts.scheme or 'none'!r}")
    if parts.scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket's path"
    if port == 0:
        return "port must be 1-65535"
    return _database_problem(parts.path)


def _database_problem(path: str) -> str | None:
    database = path.strip("/")
    if database and not re.fullmatch(r"\d+", database):
        return f"the path must be a database number such as /0, got {path!r}"
    return None
