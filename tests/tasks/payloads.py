"""Hostile task payloads, by strategy: what a producer in any language could send by
task name. Valid and malformed alike: wrong types, contents around the 1 MiB limit,
Unicode edge cases, unknown keywords, wrong arity, huge association lists,
out-of-range budgets.

`CONTRACT` is the producer contract as the README states it, written out here rather
than read from the code, so the tests hold the code to the contract. `refusal_problem`
is the oracle: a call gets a result, or `InvalidArgument` naming an argument it could
be about, and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import example
from hypothesis import strategies as st

from spiral_tasks import validation
from spiral_tasks.errors import InvalidArgument
from spiral_tasks.validation import MAX_ASSOCIATIONS, MAX_CONTENT_BYTES

T = TypeVar("T")

#: Task name -> its arguments, in order (README, "The producer contract").
CONTRACT: dict[str, tuple[str, ...]] = {
    "spiral.store_memory": ("content", "type", "depth", "associations", "tenant",
                            "memory_id"),
    "spiral.collect_memory": ("memory_id", "tenant"),
    "spiral.retrieve_memory": ("memory_id", "tenant"),
    "spiral.gc": ("time_budget_ms", "tenant"),
    "spiral.rebuild_stats": ("tenant",),
    "spiral.stats": ("tenant",),
    "spiral.noop": (),
}
REQUIRED = {"spiral.store_memory": {"content"}, "spiral.collect_memory": {"memory_id"},
            "spiral.retrieve_memory": {"memory_id"}}
#: Tenants the payloads mostly use (so accepted calls build on each other), and ids
#: stored in them before the first payload (so associations can be accepted).
TENANTS = ("hostile", "hostile-2")
SEEDS = ("seed-1", "seed-2", "seed-3")


@dataclass(frozen=True)
class Payload:
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # a megabyte of content is not a readable example
        def short(value: Any) -> str:
            text = repr(value)
            return text if len(text) <= 120 else f"{text[:100]}...<{len(text)} chars>"
        return (f"Payload({self.name}, args=[{', '.join(map(short, self.args))}], "
                f"kwargs={{{', '.join(f'{k!r}: {short(v)}' for k, v in self.kwargs.items())}}})")


def tenants_named(payload: Payload) -> set[str]:
    """The tenant names a payload gives (valid or not), by keyword or by position."""
    params = CONTRACT[payload.name]
    given = [payload.kwargs.get("tenant")]
    if "tenant" in params and params.index("tenant") < len(payload.args):
        given.append(payload.args[params.index("tenant")])
    return {t for t in given if isinstance(t, str)}


def refusal_problem(payload: Payload, error: BaseException) -> str | None:
    """Why `error` is not an acceptable answer to `payload` (None: it is):
    `InvalidArgument` naming the first unknown keyword (quoted as messages quote
    values), else "args" for too many positional arguments, else one of the task's
    arguments."""
    if not isinstance(error, InvalidArgument):
        return f"{type(error).__name__} is not InvalidArgument: {error}"
    params = CONTRACT[payload.name]
    unknown = [k for k in payload.kwargs if k not in params]
    if unknown:
        expected = validation.quote(unknown[0]).strip("'\"")
    elif len(payload.args) > len(params):
        expected = "args"
    elif error.argument in params:
        return None
    else:
        return f"{error.argument!r} is not an argument of {payload.name}"
    return None if error.argument == expected else \
        f"{error.argument!r} was named, {expected!r} expected"


# --- values ----------------------------------------------------------------------------

#: Strings that have broken parsers, key layouts and terminals somewhere.
EDGE_TEXT = ["", " ", "\x00", "a\x00b", "\ud800", "\udfff", "a\ud83d", "😀", "é", "e\u0301",
             "\u202eevil", "\u200b", "\ufeff", "\uff21", "\u0130", "ß", "\n", "\t", "t:{x}:mem:y",
             "{a}", "*", "?", "[a]", "\\", "%s", "../..", "a" * 64, "a" * 65, "a" * 128,
             "a" * 129, "-x", ".x", "x:y", "default", "hostile", "NaN", "null", "0"]

json_leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
             | st.sampled_from([10**400, -(10**400), 2**63, 2**64])
             | st.floats() | st.text(max_size=30) | st.sampled_from(EDGE_TEXT))
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def sized_text(size: int, unit: str) -> str:
    """A string of exactly `size` UTF-8 bytes, made of `unit` and ASCII padding."""
    width = len(unit.encode())
    return unit * (size // width) + "a" * (size % width)


def big_content() -> st.SearchStrategy[str]:
    """Contents around the 1 MiB limit (in bytes, whatever the characters)."""
    sizes = st.sampled_from([MAX_CONTENT_BYTES - 1, MAX_CONTENT_BYTES,
                             MAX_CONTENT_BYTES + 1, MAX_CONTENT_BYTES + 4])
    units = st.sampled_from(["a", "é", "€", "😀"])  # one to four bytes a character
    return st.builds(sized_text, sizes, units)


def names() -> st.SearchStrategy[Any]:
    """Tenants and types: mostly valid, often not."""
    return st.one_of(st.sampled_from(TENANTS), st.sampled_from(EDGE_TEXT),
                     st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True),
                     st.text(max_size=70), json_value)


def memory_ids() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(SEEDS), st.sampled_from(EDGE_TEXT),
                     st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}", fullmatch=True),
                     st.just(0), st.just(False), st.just(""), json_value)


def associations() -> st.SearchStrategy[Any]:
    sizes = st.sampled_from([MAX_ASSOCIATIONS - 1, MAX_ASSOCIATIONS, MAX_ASSOCIATIONS + 1,
                             20_000])
    huge_of_seeds = st.builds(lambda n: [SEEDS[i % len(SEEDS)] for i in range(n)], sizes)
    huge_distinct = st.builds(lambda n: [f"id-{i}" for i in range(n)], sizes)
    return st.one_of(st.none(), st.just([]), st.lists(st.sampled_from(SEEDS), max_size=3),
                     st.lists(memory_ids(), max_size=4), huge_of_seeds, huge_distinct,
                     st.sampled_from(SEEDS), st.dictionaries(st.text(max_size=5),
                                                             json_leaf, max_size=2),
                     json_value)


def budgets() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.floats(min_value=0.001, max_value=50), st.integers(1, 60_000),
        st.sampled_from([0, -1, -0.0, 60_000, 60_000.0001, 60_001, math.inf, -math.inf,
                         math.nan, 1e308, 10**400, True, False, "25", [25], {"ms": 25}]),
        json_value)


def contents() -> st.SearchStrategy[Any]:
    """Contents of every kind; a megabyte one in about one draw of ten (each costs a
    few megabytes of JSON through the broker)."""
    small = st.one_of(st.text(max_size=200), st.sampled_from(EDGE_TEXT), json_value)
    return st.one_of(small, small, small, big_content())


VALUES: dict[str, st.SearchStrategy[Any]] = {
    "content": contents(),
    "type": names(),
    "depth": st.one_of(st.sampled_from(["surface", "shallow", "deep", "core",
                                        "transcendent", "Deep", "abyss", ""]), json_value),
    "associations": associations(),
    "tenant": names(),
    "memory_id": memory_ids(),
    "time_budget_ms": budgets(),
}

#: Keywords no task takes, some close to real ones.
UNKNOWN = st.one_of(st.sampled_from(["conten", "Content", "tenant_id", "memoryId", "self",
                                     "args", "kwargs", "", "\ud800", "x" * 300, "__class__"]),
                    st.text(max_size=12))


#: Calls that once failed otherwise than with InvalidArgument (a TypeError from inside
#: Celery, a traceback in the worker's log): run by every property test first.
FOUND = [
    Payload("spiral.noop", (), {"conten": None}),   # noop took no checked arguments
    Payload("spiral.noop", (1,), {}),
    Payload("spiral.collect_memory", (), {"self": None}),  # collided with __call__'s self
    Payload("spiral.store_memory", ("x",), {"self": 1, "content": "y"}),
]

#: Task names, the store (the most arguments, the most ways to be wrong) and GC (the
#: budget) drawn more often than the others.
WEIGHTED_NAMES = ["spiral.store_memory"] * 5 + ["spiral.gc"] * 2 + sorted(CONTRACT)


@st.composite
def payloads(draw: st.DrawFn) -> Payload:
    """One call: a task by name, with positional and keyword arguments that may or may
    not fit it."""
    name = draw(st.sampled_from(WEIGHTED_NAMES))
    params = CONTRACT[name]
    shape = draw(st.sampled_from(["keywords", "keywords", "keywords", "positional",
                                  "mixed", "unknown", "too many"]))
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if shape in ("positional", "mixed", "too many"):
        count = draw(st.integers(0, len(params)))
        args = [draw(VALUES[p]) for p in params[:count]]
        if shape == "too many":
            args += draw(st.lists(json_value, min_size=1, max_size=3))
    if shape != "positional":
        chosen = draw(st.lists(st.sampled_from(params), unique=True)) if params else []
        if shape == "mixed" and args and draw(st.booleans()):
            chosen.append(params[len(args) - 1])  # given twice: by position and by name
        kwargs = {p: draw(VALUES[p]) for p in chosen}
        if shape == "keywords":  # mostly the required ones, so calls often fit
            kwargs.update({p: draw(VALUES[p]) for p in REQUIRED.get(name, ())
                           if p not in kwargs})
        if "tenant" in params and "tenant" not in kwargs and draw(st.booleans()):
            kwargs["tenant"] = draw(st.sampled_from(TENANTS))
    if shape == "unknown":
        kwargs.update(draw(st.dictionaries(UNKNOWN, json_leaf, min_size=1, max_size=2)))
    return Payload(name, tuple(args), kwargs)


def examples(calls: list[Payload]) -> Callable[[T], T]:
    """`hypothesis.example` for each of `calls`."""
    def decorate(test: T) -> T:
        for payload in reversed(calls):
            test = example(payload)(test)
        return test
    return decorate
