"""Task results on Redis in one round trip (spiral_tasks/tasks/results.py), against a
real redis-server: what Celery's own backend stores, publishes and keeps, and the
one thing it refuses (overwriting a success)."""

from __future__ import annotations

import json
import uuid

import redis

from spiral_tasks.tasks.app import create_app
from spiral_tasks.tasks.results import RedisResults
from spiral_tasks.testing.celery_worker import worker_env
from spiral_tasks.testing.waiting import wait_until


def commands(client: redis.Redis, name: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{name}", {})
    return int(stats.get("calls", 0))


def test_a_result_is_stored_and_published_in_one_call(redis_url: str) -> None:
    app = create_app(worker_env(redis_url, SPIRAL_RESULT_EXPIRES_S="600"))
    backend = app.backend
    assert isinstance(backend, RedisResults)
    client = redis.Redis.from_url(redis_url)
    task_id = str(uuid.uuid4())
    key = f"celery-task-meta-{task_id}"
    listener = client.pubsub()
    listener.subscribe(key)
    wait_until(lambda: listener.get_message(timeout=0.1), 10,
               message="the subscription to be confirmed")
    backend.store_result(str(uuid.uuid4()), None, "SUCCESS")  # the script loaded once
    client.config_resetstat()
    backend.store_result(task_id, {"id": "m1", "tenant": "t"}, "SUCCESS")
    # One script call (the GET, SET and PUBLISH Redis counts are the script's own); no
    # transaction of Celery's (MULTI, SET, PUBLISH, EXEC) after a GET of its own.
    assert commands(client, "evalsha") == 1
    assert commands(client, "script|load") == commands(client, "eval") == 0
    assert commands(client, "get") == commands(client, "set") == 1
    assert commands(client, "multi") == commands(client, "exec") == 0
    stored = json.loads(client.get(key) or b"")
    assert stored["status"] == "SUCCESS"
    assert stored["result"] == {"id": "m1", "tenant": "t"}
    assert stored["task_id"] == task_id
    assert 0 < client.ttl(key) <= 600
    published = wait_until(lambda: listener.get_message(timeout=0.1), 10,
                           message="the result to be published")
    assert json.loads(published["data"]) == stored
    # What a producer reads back through Celery.
    assert app.AsyncResult(task_id).get(timeout=10) == {"id": "m1", "tenant": "t"}
    listener.close()


def test_a_success_is_never_overwritten(redis_url: str) -> None:
    """A copy of a task redelivered after its worker was lost must not replace the
    result the first copy stored (Celery's rule, kept)."""
    backend = create_app(worker_env(redis_url)).backend
    client = redis.Redis.from_url(redis_url)
    task_id = str(uuid.uuid4())
    backend.store_result(task_id, None, "STARTED")
    assert json.loads(client.get(f"celery-task-meta-{task_id}") or b"")["status"] == "STARTED"
    backend.store_result(task_id, 1, "SUCCESS")
    backend.store_result(task_id, None, "STARTED")
    backend.store_result(task_id, ValueError("late"), "FAILURE")
    stored = json.loads(client.get(f"celery-task-meta-{task_id}") or b"")
    assert (stored["status"], stored["result"]) == ("SUCCESS", 1)


def test_a_failure_keeps_celerys_encoding(redis_url: str) -> None:
    app = create_app(worker_env(redis_url))
    task_id = str(uuid.uuid4())
    app.backend.store_result(task_id, ValueError("bad input"), "FAILURE")
    result = app.AsyncResult(task_id)
    assert result.failed()
    assert isinstance(result.result, ValueError)
    assert str(result.result) == "bad input"
