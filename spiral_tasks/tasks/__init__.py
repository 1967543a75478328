"""The Celery layer: a thin shell over the engine.

    app.py       the Celery app, configured from the environment (config.py)
    config.py    broker, result backend, queues, delivery guarantees, beat
    tasks.py     the producer contract: spiral.store_memory and the rest
    runtime.py   one engine per worker process, opened after fork
    beat.py      beat's scheduler (Redis): a lock that outlives beat's sleep
"""
