"""The embedded deployment's broker and result backend: SQLite files, no server.

    process.py         who holds a claim, and whether it is certainly dead
    database.py        SQLite connections: one per thread, WAL, waiting on locks
    store.py           messages, claims, queues and bindings in one file
    sqlite.py          the kombu transport over the store
    sqlite_results.py  the Celery result backend
    urls.py            the `spiral-sqlite://<path>` URLs (no Celery import: settings
                       use it)
    registry.py        makes the scheme known to kombu and Celery

`spiral_tasks.tasks.config` imports `registry`, so every process that uses the app
can name `spiral-sqlite://` in `broker_url` and `result_backend` like a built-in.
"""

