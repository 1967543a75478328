"""spiral perf: the runbook's perf:store (and collect, gc) on every backend, and end
to end through a real worker beside no-op tasks; figures and the invariant printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spiral_tasks.tasks.app import create_app
from spiral_tasks.testing.celery_worker import running_workers, worker_env
from spiral_tasks.testing.redis_server import RedisServer
from tests.cli.programs import json_out, one_line, spiral
from tests.conftest import BACKENDS

SMALL = {"PERF_ITERATIONS": "60", "PERF_CONCURRENCY": "4"}


def on(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if backend == "redis":
        return {"REDIS_URL": request.getfixturevalue("redis_url")}
    return {"SPIRAL_STORAGE": backend}


@pytest.mark.parametrize("backend", BACKENDS)
def test_perf_store_prints_the_runbooks_figures(backend: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    result = spiral(tmp_path, "perf", "store", **SMALL, **on(backend, request))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "60 stores in tenant 'perf'" in out
    assert "4 concurrent callers" in out
    for figure in ("p50 ", "p95 ", "p99 ", "stores/s (60 in ", "errors       0 (0.00%",
                   "lock wait    ", "of the operations' time",
                   "invariant    total 60 == sum of spiral node counts 60 == node records "
                   "60: holds"):
        assert figure in out


@pytest.mark.parametrize("operation", ["collect", "gc"])
def test_perf_collect_and_gc_measure_what_they_prepared(operation: str, tmp_path: Path,
                                                        redis_url: str) -> None:
    result = spiral(tmp_path, "perf", operation, "--json", **SMALL, REDIS_URL=redis_url)
    assert result.returncode == 0, result.stderr
    report = json_out(result)
    assert report["prepared"] == 60
    assert report["errors"] == {}
    assert report["invariant"]["consistent"] is True  # type: ignore[index]
    assert report["invariant"]["total_memories"] == 0  # type: ignore[index]
    if operation == "gc":
        assert report["collected"] == 60
        assert report["time_budget_ms"] == 25.0
    else:
        assert report["ops"] == 60


def test_bad_perf_settings_are_named(tmp_path: Path) -> None:
    result = spiral(tmp_path, "perf", "store", PERF_ITERATIONS="0")
    assert result.returncode == 2
    assert "PERF_ITERATIONS='0': must be at least 1" in one_line(result)
    assert list(tmp_path.iterdir()) == []


def test_through_celery_compares_stores_with_noops_on_a_real_worker(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        env = worker_env(server.url)
        assert spiral(tmp_path, "perf", "store", "--through-celery",
                      REDIS_URL=server.url).returncode == 1  # no worker yet: said so
        with running_workers(create_app(env), env, tmp_path / "w", ["perf"]):
            result = spiral(tmp_path, "perf", "store", "--through-celery", **SMALL,
                            REDIS_URL=server.url)
            as_json = spiral(tmp_path, "perf", "collect", "--through-celery", "--json",
                             **SMALL, REDIS_URL=server.url)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "60 tasks, then as many spiral.noop, 4 in flight" in out
    assert "store (round trips as the producer sees them, 4 in flight)" in out
    assert "noop (the yardstick" in out
    assert "at half the store throughput (" in out
    assert re.search(r"^  store +p50 [\d.]+ ms   p95 [\d.]+ ms   p99 [\d.]+ ms   errors 0$",
                     out, re.MULTILINE), out
    assert re.search(r"^  noop +p50 [\d.]+ ms   p95 [\d.]+ ms   p99 [\d.]+ ms   errors 0$",
                     out, re.MULTILINE), out
    assert re.search(r"^ratio        store/noop throughput \d+\.\d\d, p95 at half the store "
                     r"throughput \d+\.\d\d$", out, re.MULTILINE), out
    # The measured stores, then as many sent on schedule.
    assert "invariant    total 120 == sum of spiral node counts 120 == node records 120: " \
           "holds" in out
    assert as_json.returncode == 0, as_json.stderr
    report = json_out(as_json)
    assert report["ops"] == 60
    assert report["noop"]["ops"] == 60  # type: ignore[index]
    assert report["ratio_to_noop"] > 0  # type: ignore[operator]
    paced = report["at_half_throughput"]
    assert paced["ops"] == paced["noop"]["ops"] == 60  # type: ignore[index]
    assert paced["rate_per_s"] > 0  # type: ignore[index]
    assert paced["p95_ratio_to_noop"] > 0  # type: ignore[index]
    assert paced["errors"] == {}  # type: ignore[index]
    # Collect prepares an id for each measured collect and each paced one, and collects
    # them all: what is left is what the store run stored.
    assert report["prepared"] == 120
    assert report["invariant"]["total_memories"] == 120  # type: ignore[index]
