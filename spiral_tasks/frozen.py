"""Frozen dataclasses that are built in one step, not one call per field.

A frozen dataclass's generated `__init__` sets each field through `object.__setattr__`
(to get past the `__setattr__` that makes it frozen): one function call per field. A
store makes a dozen such values per memory (the memory, its position, its spiral, the
writes and their encodings), and those calls were about a tenth of a store's time in
process. `quick_init` gives such a class an `__init__` of the same signature that
fills the instance's `__dict__` directly; everything else (frozen, eq, hash, repr,
`replace`, `match`, pickling) stays the dataclass's own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Decorate a frozen dataclass (applied after `@dataclass`). Only for the plain
    case: positional fields, plain defaults, no `__post_init__`, no slots; anything
    else is refused rather than half supported."""
    params: Any = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: slots or __post_init__ are not supported")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if any(not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING
           for f in fields):
        raise TypeError(f"{cls.__name__}: only plain positional fields are supported")
    signature = ", ".join(["self"] + [
        f.name if f.default is dataclasses.MISSING else f"{f.name}=__defaults[{f.name!r}]"
        for f in fields])
    body = "".join(f"    d[{f.name!r}] = {f.name}\n" for f in fields)
    source = f"def __init__({signature}):\n    d = self.__dict__\n{body}"
    namespace: dict[str, Any] = {}
    exec(source, {"__defaults": {f.name: f.default for f in fields}}, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses assigning a method
    return cls
