"""Hostile payloads in process, many of them: the task functions themselves (their
argument checks, then the engine) over real storage, without the broker. Each call
gets a result a JSON producer can read, or `InvalidArgument` naming the argument; a
refused call changes nothing stored; the invariant holds after every call.

The same payloads go through a real worker in `test_hostile_worker.py`, fewer of
them: a round trip through the broker costs milliseconds, a call here microseconds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from celery import Celery
from hypothesis import HealthCheck, given, settings

from spiral_tasks.engine import SpiralMemory
from spiral_tasks.storage.factory import open_storage
from spiral_tasks.tasks import runtime
from spiral_tasks.testing.engines import engine_over
from tests.digests import Unchanged, storage_digest
from tests.invariants import assert_consistent
from tests.tasks.payloads import (
    CONTRACT,
    FOUND,
    SEEDS,
    TENANTS,
    Payload,
    examples,
    payloads,
    refusal_problem,
    tenants_named,
)

#: No GC task is sent from a call here (there is no broker): a trigger interval no run
#: reaches.
NEVER = 10**9


@pytest.fixture
def contract_app() -> Celery:
    from spiral_tasks.tasks.tasks import app  # noqa: PLC0415 - the workers' app and tasks

    return app


def seeded(engine: SpiralMemory) -> SpiralMemory:
    for tenant in TENANTS:
        for memory_id in SEEDS:
            engine.store(f"seed {memory_id}", tenant=tenant, memory_id=memory_id)
    return engine


def test_the_contract_is_what_the_tasks_take(contract_app: Celery) -> None:
    """The strategies are written from the README's contract: it must be the code's."""
    import inspect  # noqa: PLC0415

    for name, params in CONTRACT.items():
        assert tuple(inspect.signature(contract_app.tasks[name].run).parameters) == params


@pytest.mark.parametrize("backend", ["memory", "level"])
def test_hostile_payloads_get_a_result_or_a_named_refusal_and_refusals_change_nothing(
        backend: str, tmp_path: Path, contract_app: Celery,
        monkeypatch: pytest.MonkeyPatch) -> None:
    storage = open_storage(backend, db_path=tmp_path / "spiraldb")
    engine = seeded(engine_over(storage, trigger_interval=NEVER))
    monkeypatch.setattr(runtime, "engine", lambda: engine)
    outcomes: Counter[str] = Counter()

    @settings(max_examples=500 if backend == "memory" else 120, deadline=None,
              derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.data_too_large])
    @given(payloads())
    @examples(FOUND)
    def one(payload: Payload) -> None:
        unchanged.before()
        task = contract_app.tasks[payload.name]
        try:
            result = task(*payload.args, **payload.kwargs)
        except Exception as exc:  # which one is the point of the test
            problem = refusal_problem(payload, exc)
            assert problem is None, f"{payload!r}: {problem}"
            assert not unchanged.changed(), f"{payload!r} was refused but wrote"
            outcomes["refused"] += 1
        else:
            json.dumps(result, allow_nan=False)  # what a JSON producer reads back
            unchanged.forget()
            outcomes["answered"] += 1
        for tenant in tenants_named(payload) & set(engine.tenants()):
            assert_consistent(engine, tenant)

    unchanged = Unchanged(lambda: storage_digest(storage))
    try:
        one()
        for tenant in engine.tenants():
            assert_consistent(engine, tenant)
    finally:
        storage.close()
    # Neither outcome may be vacuous: the strategies reach both.
    assert outcomes["answered"] >= 20, outcomes
    assert outcomes["refused"] >= 20, outcomes
