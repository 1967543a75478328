"""`spiral perf`: the runbook's performance checks, in process or through Celery.

    measure.py     closed-loop drivers, latencies and percentiles (benchmarks/ too)
    locks.py       the lock wait an engine reports, summed
    inprocess.py   store, collect or GC through the engine, from many threads
    remote.py      the same as tasks through running workers, beside no-op tasks
"""
