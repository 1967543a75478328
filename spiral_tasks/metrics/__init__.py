"""Prometheus metrics of a worker node, served on `METRICS_PORT` (9099).

    families.py   the metric families: names, units, labels, buckets
    observer.py   the engine's `Observer`, recording into those families
    folder.py     the folder prefork children share their samples through
    exporter.py   the HTTP endpoint of a node, serving every process's samples

The engine knows only `spiral_tasks.observe.Observer`; this package implements it, and
the Celery layer (`tasks/signals.py`) starts the exporter in each worker's main process
and counts retries. Nothing here imports Celery.
"""
