"""ops/RUNBOOK.md's alerts name series the workers export."""

from __future__ import annotations

import re

from tests.ops.manifests import ROOT, RUNBOOK

#: What Prometheus adds to a histogram's or a summary's name.
SAMPLE_SUFFIXES = re.compile(r"_(bucket|count|sum|created)$")


def alert_series() -> set[str]:
    """The spiral_* metric names the runbook's alert rules use."""
    rules = "\n".join(re.findall(r"```yaml\n(.*?)```", RUNBOOK.read_text(), re.DOTALL))
    return {SAMPLE_SUFFIXES.sub("", name)
            for name in re.findall(r"\bspiral_[a-z_]+(?=[{\[)\s])", rules)}


def test_alerts_use_series_the_workers_export() -> None:
    assert {"spiral_invariant_holds", "spiral_lock_timeouts_total",
            "spiral_gc_pause_seconds", "spiral_store_duration_seconds"} <= alert_series()
    sources = "\n".join(p.read_text() for p in (ROOT / "spiral_tasks" / "metrics").rglob("*.py"))
    # Names as written in the sources: literals, or f-strings over a few operations.
    patterns = [re.sub(r"\\\{[^}]*\\\}", "[a-z_]+", re.escape(name))
                for name in re.findall(r"[\"'](spiral_[a-z_{}]+)[\"']", sources)]
    for series in alert_series():
        assert any(re.fullmatch(p, series) for p in patterns), \
            f"{series}: not a metric of spiral_tasks/metrics"
