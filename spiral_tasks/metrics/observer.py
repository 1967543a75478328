"""The engine's observer that records into the Prometheus families.

Tenants label the gauges only: histograms and counters are per node, so a deployment
with thousands of tenants keeps a bounded number of series on its hot paths.
"""

from __future__ import annotations

from spiral_tasks.gc.policy import GcReport
from spiral_tasks.metrics.families import families
from spiral_tasks.observe import Observer
from spiral_tasks.rebuild import RebuildReport


class PrometheusObserver(Observer):
    def lock_acquired(self, tenant: str, waited_s: float) -> None:
        families().lock_wait.observe(waited_s)

    def lock_timed_out(self, tenant: str, waited_s: float) -> None:
        families().lock_timeouts.inc()

    def lock_lost(self, tenant: str) -> None:
        families().lock_lost.inc()

    def operation(self, name: str, tenant: str, seconds: float, ok: bool) -> None:
        histogram = families().durations.get(name)
        if histogram is not None:
            histogram.labels("ok" if ok else "error").observe(seconds)

    def tenant_counts(self, tenant: str, memories: int, spirals: int) -> None:
        measured = families()
        measured.memories.labels(tenant).set(memories)
        measured.spirals.labels(tenant).set(spirals)

    def gc_ran(self, report: GcReport) -> None:
        measured = families()
        measured.gc_pause.observe(report.duration_ms / 1000)
        if report.collected:
            measured.gc_collected.inc(report.collected)

    def rebuilt(self, report: RebuildReport) -> None:
        corrections = {"spiral": len(report.corrected_spirals),
                       "counter": len(report.corrected_counters),
                       "orphan": len(report.orphans),
                       "queue": report.queue_fixes,
                       "sigil": report.sigil_fixes,
                       "quarantine": len(report.quarantined)}
        counter = families().rebuild_corrections
        for kind, count in corrections.items():
            # Every kind is exported from the first rebuild on, so `increase()` has a
            # zero to start from when the first correction comes.
            counter.labels(kind).inc(count)

    def invariant(self, tenant: str, holds: bool) -> None:
        families().invariant_holds.labels(tenant).set(1 if holds else 0)


def count_retry(task: str, cause: str) -> None:
    """A task is retried because of `cause` (the exception's class name)."""
    families().retries.labels(task, cause).inc()
