"""The result repr Celery logs and sends with task-succeeded: the cheap path gives what
Celery's saferepr gives, and hands saferepr whatever it cannot vouch for."""

from __future__ import annotations

import random
from typing import Any

import pytest
from celery.app import trace
from celery.utils.saferepr import saferepr

from spiral_tasks.tasks import reprs, tasks  # noqa: F401 - tasks: installs it
from spiral_tasks.tasks.reprs import quick_repr

STORE_RESULT = {"id": "a77d47cc516849949c072e90251c5ea5", "tenant": "t0",
                "spiral_id": "spiral_025cbdf17f7d4242", "sigil": "1b163db8ec6bb24",
                "position": {"index": 0, "angle": 0.0, "radius": 1.5e-7, "x": -0.0,
                             "y": 1e100, "turn": 0},
                "created": True}


def json_value(rng: random.Random, depth: int = 0) -> Any:
    """Random JSON data: scalars of every kind, strings with quotes and accents, dicts
    and lists nested up to four deep."""
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-10**12, 10**12)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.5e-7, 1e100, rng.random(), float("inf")])
    if kind in (3, 4):
        return "".join(rng.choice("ab'\"é\\\n x") for _ in range(rng.randrange(12)))
    if kind in (5, 6):
        return {f"k{i}'": json_value(rng, depth + 1) for i in range(rng.randrange(5))}
    return [json_value(rng, depth + 1) for _ in range(rng.randrange(5))]


@pytest.mark.parametrize("maxlen", [1024, 40])
def test_it_gives_what_saferepr_gives(maxlen: int) -> None:
    rng = random.Random(10)
    values = [None, 1, "x", STORE_RESULT, {"collected_ids": ["a"] * 500},
              {"k": [{"a": []}, {}]}, (1, 2), b"bytes", {1: "int key"},
              *(json_value(rng) for _ in range(2000))]
    for value in values:
        assert quick_repr(value, maxlen) == saferepr(value, maxlen), value


def test_a_store_result_takes_the_cheap_path() -> None:
    assert reprs._small(STORE_RESULT, 0, [reprs.MAX_ITEMS])
    assert not reprs._small({"ids": list(range(100))}, 0, [reprs.MAX_ITEMS])


def test_the_worker_tracer_uses_it() -> None:
    assert trace.saferepr is quick_repr  # type: ignore[attr-defined]
