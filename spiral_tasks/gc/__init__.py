"""Garbage collection: the policy (which memory goes first, and when) and the run.

    policy.py       retention deadlines, eligibility, the report
    run.py          a budgeted run over one tenant or all of them, fair across tenants
    budget.py       what a run can afford: its batches' measured costs, its deadline
    tombstones.py   expired tombstones forgotten, and when the next one is due
    slices.py       shorter GIL slices while a run lasts
"""

from spiral_tasks.gc.policy import (
    INITIAL_STRENGTH,
    GcReport,
    retain_until,
    retention_deadline,
    select,
)

__all__ = ["INITIAL_STRENGTH", "GcReport", "retain_until", "retention_deadline", "select"]
