"""Text renderings of engine reports, shared by the command-line programs."""

from __future__ import annotations

from spiral_tasks.gc import GcReport
from spiral_tasks.rebuild import RebuildReport
from spiral_tasks.results import TenantStats

RULE = "-" * 60
REBUILD_TARGET_S = 5.0


def rebuild_report(report: RebuildReport, verbose: bool = False) -> str:
    seconds = report.duration_ms / 1000
    rate = report.total_nodes / seconds if seconds > 0 else float("inf")
    lines = [
        "REPAIR REPORT",
        RULE,
        f"Rebuild time:        {report.duration_ms:.2f} ms",
        f"Total nodes scanned: {report.total_nodes}",
        f"Spirals corrected:   {len(report.corrected_spirals)}",
        f"Spirals unchanged:   {len(report.unchanged_spirals)}",
        f"Counters corrected:  {len(report.corrected_counters)}",
        f"Orphans handled:     {len(report.orphans)}",
        f"Queue/sigil fixes:   {report.queue_fixes}/{report.sigil_fixes}",
    ]
    for fix in report.corrected_spirals:
        b, a = fix.before, fix.after
        lines += [
            f"  spiral {fix.spiral_id} ({fix.type}, tenant {fix.tenant})",
            f"    node count: {b.node_count} -> {a.node_count} "
            f"(delta {a.node_count - b.node_count:+d})",
            f"    avg depth:  {b.average_depth:.3f} -> {a.average_depth:.3f}",
            f"    radius:     {b.current_radius:.3f} -> {a.current_radius:.3f}",
            f"    turns:      {b.total_turns} -> {a.total_turns}",
        ]
    if verbose:
        lines += [f"  counter {c.key}: {c.before} -> {c.after}"
                  for c in report.corrected_counters]
        lines += [f"  unchanged spiral {s}" for s in report.unchanged_spirals]
    met = "met" if seconds < REBUILD_TARGET_S else "MISSED"
    lines += [RULE, f"Performance: {rate:,.0f} nodes/second "
                    f"(target <{REBUILD_TARGET_S:.0f} s: {met})"]
    return "\n".join(lines)


def stats(report: TenantStats) -> str:
    lines = [f"tenant {report.tenant}: {report.total_memories} memories in "
             f"{len(report.spirals)} spirals, {report.node_records} node records, "
             f"consistent={report.consistent}"]
    lines += [f"  {s.id} {s.type.value:<13} nodes={s.node_count:<4} "
              f"avg_depth={s.average_depth:.3f} radius={s.current_radius:.3f} "
              f"turns={s.total_turns}" for s in report.spirals]
    return "\n".join(lines)


def gc_report(report: GcReport) -> str:
    state = "complete" if report.complete else "budget spent, resumes next run"
    return (f"gc: collected {report.collected}, remaining {report.remaining}, "
            f"{report.duration_ms:.2f} ms ({state})")
