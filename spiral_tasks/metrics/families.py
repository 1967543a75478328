"""The metric families a worker node exports: base units, Prometheus naming.

They are created on first use in each process, never at import: the Celery command
imports prometheus_client (through Flower's command) before this package runs, and
the values must be made after `folder.ensure_multiprocess` has switched the client to
its multiprocess mode, or the prefork children's samples would stay in their own
memory. They are registered nowhere: in multiprocess mode the exporter collects them
from the shared folder, so a registry would only show one process's view.

Gauges that describe a tenant (its counts, its invariant) take the most recent value
any process set: every process sees the same tenants, and the latest check is the
truth. Counters and histograms add up over processes, dead ones included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

#: Operations the engine times (`Observer.operation`), each with its own histogram.
OPERATIONS = ("store", "collect", "retrieve", "retrieve_by_sigil")
#: Latencies of one operation, from a sub-millisecond in-process store to a lock wait.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
#: GC pauses around the 25 ms default budget.
GC_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Lock waits, up to the 2 s a section waits before `LockTimeout`.
LOCK_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                     0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Families:
    memories: Gauge
    spirals: Gauge
    invariant_holds: Gauge
    durations: dict[str, Histogram]
    gc_pause: Histogram
    gc_collected: Counter
    lock_wait: Histogram
    lock_timeouts: Counter
    lock_lost: Counter
    retries: Counter
    rebuild_corrections: Counter


@functools.cache
def families() -> Families:
    """This process's families, made on first use (see the module's docstring)."""
    return Families(
        memories=Gauge("spiral_memories", "Memories a tenant holds, as last committed "
                       "or checked", ["tenant"], registry=None,
                       multiprocess_mode="mostrecent"),
        spirals=Gauge("spiral_spirals", "Spirals a tenant has", ["tenant"], registry=None,
                      multiprocess_mode="mostrecent"),
        invariant_holds=Gauge("spiral_invariant_holds", "1 while the tenant's total, "
                              "spiral node counts and node records agree, as last "
                              "checked by spiral.stats; 0 when they did not",
                              ["tenant"], registry=None, multiprocess_mode="mostrecent"),
        durations={name: Histogram(f"spiral_{name}_duration_seconds",
                                   f"Time one {name} took in the engine, lock wait "
                                   "included; outcome is ok or error", ["outcome"],
                                   registry=None, buckets=LATENCY_BUCKETS)
                   for name in OPERATIONS},
        gc_pause=Histogram("spiral_gc_pause_seconds", "Duration of one GC run (its pause)",
                           registry=None, buckets=GC_PAUSE_BUCKETS),
        gc_collected=Counter("spiral_gc_collected_total", "Memories collected by GC",
                             registry=None),
        lock_wait=Histogram("spiral_lock_wait_seconds", "Time a section waited for its "
                            "tenant's lock before entering", registry=None,
                            buckets=LOCK_WAIT_BUCKETS),
        lock_timeouts=Counter("spiral_lock_timeouts_total", "Sections that gave up "
                              "waiting for a tenant's lock (LockTimeout)", registry=None),
        lock_lost=Counter("spiral_lock_lost_total", "Commits refused by fencing because "
                          "the holder's lock had expired (LockLost)", registry=None),
        retries=Counter("spiral_task_retries_total", "Task retries, by task and by the "
                        "exception that caused them", ["task", "cause"], registry=None),
        rebuild_corrections=Counter("spiral_rebuild_corrections_total", "What rebuilds "
                                    "corrected, by kind: spiral, counter, orphan, queue, "
                                    "sigil, quarantine (corrupt records moved aside)",
                                    ["kind"], registry=None),
    )
