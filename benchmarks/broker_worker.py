"""`python -m benchmarks.broker_worker <celery arguments>`: the `celery` command with
the benchmark-only `fs-atomic://` transport known and, when SPIRAL_BENCH_FS_FOLDER
is set, kombu's filesystem folders pointed there (the app's own configuration
names no folders for it), and with SPIRAL_BENCH_NO_TRANSPORT_OPTIONS no transport
options at all (kombu's SQLAlchemy transport hands them to create_engine). Used
by `benchmarks.brokers` to start its workers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from celery.__main__ import main

from benchmarks import fs_atomic
from benchmarks.brokers import filesystem_options

if __name__ == "__main__":
    fs_atomic.register()
    folder = os.environ.get("SPIRAL_BENCH_FS_FOLDER")
    if folder:
        from spiral_tasks.tasks.app import app

        app.conf.broker_transport_options = filesystem_options(Path(folder))
    if os.environ.get("SPIRAL_BENCH_NO_TRANSPORT_OPTIONS"):
        from spiral_tasks.tasks.app import app

        app.conf.broker_transport_options = {}
    sys.argv = ["celery", *sys.argv[1:]]
    main()
