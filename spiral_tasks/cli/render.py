"""Text renderings of the engine's reports, from their JSON shapes (what tasks return
and producers see), shared by the command-line programs."""

from __future__ import annotations

from typing import Any

RULE = "-" * 64
#: The runbook's target for a full rebuild.
REBUILD_TARGET_S = 5.0


def rebuild_report(report: dict[str, Any], verbose: bool = False) -> str:
    """The runbook's repair report: what was scanned, what was corrected, how fast."""
    seconds = report["duration_ms"] / 1000
    nodes = report["total_nodes"]
    rate = f"{nodes / seconds:,.0f} nodes/second" if seconds > 0 else "instant"
    orphans = report["orphans"]
    lines = [
        f"Rebuild time:        {report['duration_ms']:.2f} ms",
        f"Total nodes scanned: {nodes}",
        f"Spirals corrected:   {len(report['corrected_spirals'])}",
        f"Spirals unchanged:   {len(report['unchanged_spirals'])}",
        f"Counters corrected:  {len(report['corrected_counters'])}",
        f"Orphans handled:     {sum(len(v) for v in orphans.values())}",
        f"Queue/sigil fixes:   {report['queue_fixes']}/{report['sigil_fixes']}",
        f"Quarantined:         {len(report['quarantined'])}",
    ]
    # Always listed: each is a record an operator must look at (spiral quarantine).
    lines += [f"  quarantined {q['key']}: {q['reason']} (now at {q['moved_to']})"
              for q in report["quarantined"]]
    lines += [f"Refused: {r['reason']}" for r in report["refused"]]
    for fix in report["corrected_spirals"]:
        before, after, delta = fix["before"], fix["after"], fix["deltas"]
        lines += [
            f"  spiral {fix['spiral_id']} ({fix['type']}, tenant {fix['tenant']})",
            f"    node count: {before['node_count']} -> {after['node_count']} "
            f"(delta {delta['node_count']:+d})",
            f"    avg depth:  {before['average_depth']:.3f} -> {after['average_depth']:.3f} "
            f"(delta {delta['average_depth']:+.3f})",
            f"    radius:     {before['current_radius']:.3f} -> "
            f"{after['current_radius']:.3f} (delta {delta['current_radius']:+.3f})",
            f"    turns:      {before['total_turns']} -> {after['total_turns']} "
            f"(delta {delta['total_turns']:+d})",
        ]
    if verbose:
        lines += [f"  counter {c['key']}: {c['before']} -> {c['after']}"
                  for c in report["corrected_counters"]]
        lines += [f"  unchanged spiral {s}" for s in report["unchanged_spirals"]]
    met = "met" if seconds < REBUILD_TARGET_S else "MISSED"
    lines.append(f"Performance: {rate} (target under {REBUILD_TARGET_S:.0f} s: {met})")
    return "\n".join(lines)


def stats(report: dict[str, Any], verbose: bool = False) -> str:
    """A tenant's spirals and the invariant."""
    spirals = report["spirals"]
    holds = "holds" if report["consistent"] else "BROKEN"
    lines = [f"tenant {report['tenant']}: {report['total_memories']} memories in "
             f"{len(spirals)} spirals",
             f"invariant: total {report['total_memories']} == sum of spiral node counts "
             f"{sum(s['node_count'] for s in spirals)} == node records "
             f"{report['node_records']}: {holds}"]
    shown = spirals if verbose else spirals[:8]
    lines += [f"  {s['id'] if verbose else s['id'][:14]:<24} {s['type']:<13} "
              f"nodes {s['node_count']:<4} avg depth {s['average_depth']:.3f} "
              f"radius {s['current_radius']:8.3f} turns {s['total_turns']}" for s in shown]
    if len(shown) < len(spirals):
        lines.append(f"  ... and {len(spirals) - len(shown)} more (--verbose lists all)")
    return "\n".join(lines)


def gc_report(report: dict[str, Any]) -> str:
    state = "complete" if report["complete"] else "budget spent, resumes next run"
    return (f"collected {report['collected']}, remaining {report['remaining']}, "
            f"{report['duration_ms']:.2f} ms of a {report['time_budget_ms']:g} ms "
            f"budget ({state})")


def backup_counts(summary: dict[str, Any]) -> str:
    """What a backup or restore summary counts, in words."""
    return (f"{summary['tenants']} tenant(s), {summary['keys']} keys, "
            f"{summary['index_entries']} index entries")
