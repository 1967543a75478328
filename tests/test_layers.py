"""The architecture's arrows: the engine imports no client library, no Celery and no
cipher (sealing is the storage codec's business, loaded only when a key is set)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ENGINE_MODULES = ["spiral_tasks", "spiral_tasks.engine", "spiral_tasks.section",
                  "spiral_tasks.store", "spiral_tasks.gc.run", "spiral_tasks.rebuild",
                  "spiral_tasks.backup", "spiral_tasks.perf.inprocess",
                  "spiral_tasks.security.capability", "spiral_tasks.security.rotation"]
FORBIDDEN = ["redis", "plyvel", "celery", "kombu", "cryptography"]


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_importing_the_engine_imports_no_client_library(module: str) -> None:
    code = (f"import sys, {module}; "
            f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=60).stdout.strip()
    assert found == "", f"importing {module} imported {found}"
