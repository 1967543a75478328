"""What each engine report becomes, in this process (no exporter, no folder)."""

from __future__ import annotations

from prometheus_client import Metric

from spiral_tasks.gc.policy import GcReport
from spiral_tasks.metrics.families import families
from spiral_tasks.metrics.observer import PrometheusObserver, count_retry
from spiral_tasks.quarantine import Quarantined
from spiral_tasks.rebuild import CounterCorrection, RebuildReport

OBSERVER = PrometheusObserver()


def sample(metric: object, name: str, **labels: str) -> float:
    collected: list[Metric] = metric.collect()  # type: ignore[attr-defined]
    for family in collected:
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def test_operations_are_timed_by_outcome() -> None:
    store = families().durations["store"]
    before = sample(store, "spiral_store_duration_seconds_count", outcome="error")
    OBSERVER.operation("store", "t", 0.003, ok=False)
    assert sample(store, "spiral_store_duration_seconds_count", outcome="error") == before + 1
    # An operation without a histogram of its own is not an error.
    OBSERVER.operation("something-else", "t", 0.001, ok=True)


def test_tenant_gauges_take_the_latest_report() -> None:
    OBSERVER.tenant_counts("acme", memories=7, spirals=2)
    OBSERVER.tenant_counts("acme", memories=5, spirals=1)
    OBSERVER.invariant("acme", holds=False)
    measured = families()
    assert sample(measured.memories, "spiral_memories", tenant="acme") == 5
    assert sample(measured.spirals, "spiral_spirals", tenant="acme") == 1
    assert sample(measured.invariant_holds, "spiral_invariant_holds", tenant="acme") == 0
    OBSERVER.invariant("acme", holds=True)
    assert sample(measured.invariant_holds, "spiral_invariant_holds", tenant="acme") == 1


def test_locks_gc_rebuilds_and_retries_are_counted() -> None:
    measured = families()
    names = {"lost": "spiral_lock_lost_total", "timeouts": "spiral_lock_timeouts_total",
             "wait": "spiral_lock_wait_seconds_count", "pause": "spiral_gc_pause_seconds_sum",
             "collected": "spiral_gc_collected_total"}
    metrics = {"lost": measured.lock_lost, "timeouts": measured.lock_timeouts,
               "wait": measured.lock_wait, "pause": measured.gc_pause,
               "collected": measured.gc_collected}
    before = {key: sample(metrics[key], names[key]) for key in names}
    corrections = measured.rebuild_corrections
    counters_before = sample(corrections, "spiral_rebuild_corrections_total", kind="counter")
    retries_before = sample(measured.retries, "spiral_task_retries_total",
                            task="spiral.store_memory", cause="LockTimeout")

    OBSERVER.lock_acquired("t", 0.01)
    OBSERVER.lock_timed_out("t", 2.0)
    OBSERVER.lock_lost("t")
    OBSERVER.gc_ran(GcReport(collected_ids=["a", "b"], duration_ms=20.0))
    quarantined_before = sample(corrections, "spiral_rebuild_corrections_total",
                                kind="quarantine")
    OBSERVER.rebuilt(RebuildReport(corrected_counters=[
        CounterCorrection("t:{t}:memory_count", 3, 2)], quarantined=[
        Quarantined("t:{t}:mem:m", "not JSON", "t:{t}:quarantine:mem:m@1")]))
    count_retry("spiral.store_memory", "LockTimeout")

    after = {key: sample(metrics[key], names[key]) for key in names}
    assert after["lost"] == before["lost"] + 1
    assert after["timeouts"] == before["timeouts"] + 1
    assert after["wait"] == before["wait"] + 1
    assert abs(after["pause"] - before["pause"] - 0.02) < 1e-9  # seconds, not ms
    assert after["collected"] == before["collected"] + 2
    assert sample(corrections, "spiral_rebuild_corrections_total",
                  kind="counter") == counters_before + 1
    assert sample(corrections, "spiral_rebuild_corrections_total",
                  kind="quarantine") == quarantined_before + 1
    assert sample(measured.retries, "spiral_task_retries_total", task="spiral.store_memory",
                  cause="LockTimeout") == retries_before + 1
