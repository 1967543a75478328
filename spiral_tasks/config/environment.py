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

from spiral_tasks.config.redis_urls import is_redis_url, redis_url_problem, shown_url
from spiral_tasks.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)

#: How much of a bad value an error message quotes (a variable can hold a whole file).
QUOTE_LIMIT = 80
#: Variables whose values are never quoted (by name: a secret a later version adds is
#: hidden too). A value of any variable is shown with a URL's password hidden.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|(_KEYS?|_AUTH)$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def quote(value: str) -> str:
    shown = value if len(value) <= QUOTE_LIMIT else value[:QUOTE_LIMIT] + "..."
    return repr(shown)


def is_secret(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


def shown_value(name: str, value: str) -> str:
    """How a problem quotes `name`'s value: a secret never, a URL's password hidden
    (before cutting, so a cut cannot split the password from its marker), and at
    most QUOTE_LIMIT characters."""
    if is_secret(name):
        return f"<hidden, {len(value)} characters>"
    return quote(shown_url(value))


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
        shown = f"{name}={shown_value(name, value)}" if value is not None else name
        self.problems.append(f"{shown}: {why}")

    def check(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def optional_text(self, name: str) -> str | None:
        return self.raw(name)

    def url(self, name: str, default: str) -> str:
        """A broker or result backend URL: checked as a Redis URL when it is one (the
        others are for their transports to judge)."""
        raw = self.raw(name)
        if raw is None:
            return default
        if is_redis_url(raw):
            return self.redis_url(name, default) or default
        return raw

    def flag(self, name: str) -> bool:
        raw = (self.raw(name) or "").lower()
        if raw in _TRUE:
            return True
        if raw not in _FALSE:
            self.problem(name, raw, "expected 1/0, true/false, yes/no or on/off")
        return False

    def flag_off(self, name: str) -> bool:
        """True when a flag that defaults to on is turned off (unset: on)."""
        raw = self.raw(name)
        return raw is not None and not self.flag(name)

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
               maximum: float | None = None, unit: str = "", *,
               zero_allowed: bool = False) -> float:
        """A finite number above `minimum` (exclusive) and at most `maximum`; with
        `zero_allowed`, 0 too (a setting whose 0 means "off")."""
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            what = f"a number of {unit}" if unit else "a number"
            self.problem(name, raw, f"expected {what}, e.g. {default:g}")
            return default
        if zero_allowed and value == 0:
            return 0.0
        if not math.isfinite(value) or value <= minimum:
            floor = f"0 or above {minimum:g}" if zero_allowed else f"above {minimum:g}"
            self.problem(name, raw, f"must be a finite number {floor}")
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
        spaces or lines). Setting both is a problem. A key is never quoted: `name` is a
        secret's (`is_secret`), and a bad file is named by its path."""
        value, file_name = self.raw(name), name + "_FILE"
        path = self.raw(file_name)
        if value is not None and path is not None:
            self.problem(file_name, path, f"set {name} or {file_name}, not both")
            return ()
        source, shown = name, value
        if path is not None:
            source, shown = file_name, path
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
            self.problem(source, shown, f"expected one key, found {len(texts)}")
            return ()
        found = []
        for number, text in enumerate(texts, start=1):
            key = decode_key(text)
            if key is None or len(key) != size:
                where = f"key {number}: " if len(texts) > 1 else ""
                self.problem(source, shown, f"{where}expected {size} random bytes in base64 "
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
