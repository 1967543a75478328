"""Task results on Redis written in one round trip instead of two.

Celery's Redis result backend first reads a task's stored result (a task that already
succeeded keeps its result: a copy redelivered after a lost worker must not overwrite
it), then sets and publishes the new one: two round trips from the worker child for
every task, the first the costlier half of writing a result (py-spy, BENCHMARKS.md
"Store task against no-op"). Here one script does the same check, set and publish,
atomically (no other writer can slip in between the read and the write). What is
stored and published is Celery's own encoding, under Celery's key and channel
(`celery-task-meta-<id>`), so producers in any language read results as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

#: KEYS[1] the result's key; ARGV[1] the encoded result, ARGV[2] its time to live in
#: seconds (0: none). Leaves a stored SUCCESS alone (returns 0), as Celery does.
STORE_RESULT = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
    return 0
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""

#: Where `create_app` points Celery's `redis://` and `rediss://` result backends.
BACKEND = f"{__name__}:RedisResults"


class RedisResults(RedisBackend):
    """Celery's Redis result backend (TLS, retries, the result consumer producers wait
    with: all its own), storing a task's result with one script call."""

    # Celery's (its stubs leave them out); declared for the type checker.
    expires: float | None
    failure_expires: float | None
    _get_result_meta: Callable[..., dict[str, Any]]

    def _store_result(self, task_id: str, result: Any, state: str, traceback: Any = None,
                      request: Any = None, **_: Any) -> Any:
        meta = self._get_result_meta(result=result, state=state, traceback=traceback,
                                     request=request)
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError("value too large for Redis backend", state=state,
                                    task_id=task_id)
        expires = self.failure_expires if state == states.FAILURE else self.expires
        self.ensure(self._store_once, (self.get_key_for_task(task_id), value, expires))
        return result

    def _store_once(self, key: bytes, value: str | bytes, expires: float | None) -> None:
        # The client is Celery's (its pool, its TLS options); redis-py sends EVALSHA and
        # loads the script on NOSCRIPT (a restarted or flushed server).
        client = self.client
        _script(client)(keys=[key], args=[value, int(expires or 0)], client=client)


def _script(client: Any) -> Any:
    """The script, registered once per process (its SHA is all it keeps)."""
    global _registered  # noqa: PLW0603 - one per process
    if _registered is None:
        _registered = client.register_script(STORE_RESULT)
    return _registered


_registered: Any = None
