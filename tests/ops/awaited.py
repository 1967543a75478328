"""Programs the manifests and the runbook use that other branches of issue 7 bring.

Until they are merged, a check of one of these names that finds it missing passes
(`awaited` says so); once it exists it is checked like every other name. A missing
name not listed here always fails. Lead: empty this after merging wt-cli and
wt-flower, so a name that disappears fails again.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from tests.ops.manifests import ROOT

AWAITED = {
    "spiral_tasks/metrics": "wt-metrics: each worker node's Prometheus exporter",
}


def console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts]: name -> entry point."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    scripts: dict[str, str] = project.get("scripts", {})
    return scripts


def exists(name: str) -> bool:
    """A console script installed in this virtualenv, or a file of the repository."""
    if "/" in name:
        return (ROOT / name).exists()
    return name in console_scripts() and (Path(sys.executable).parent / name).is_file()


def awaited(name: str) -> bool:
    """True when `name` is missing and another branch brings it: the caller then has
    nothing to check yet. False when it exists. A missing name nobody brings fails."""
    if exists(name):
        return False
    assert name in AWAITED, f"{name} does not exist in this repository"
    return True
