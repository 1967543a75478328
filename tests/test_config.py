from __future__ import annotations

import pytest

from spiral_tasks.config import Limits, Settings, StorageKind


def test_defaults_are_the_runbooks() -> None:
    settings = Settings.from_env({})
    assert settings.limits == Limits(89, 21, 2618, 25.0, 100, 3600.0, 2.0, 86400.0)
    assert settings.storage is StorageKind.LEVEL
    assert settings.db_path == "./spiraldb"


def test_every_limit_is_overridable() -> None:
    settings = Settings.from_env({
        "SPIRAL_MAX_MEMORY_SPIRALS": "3", "SPIRAL_TURNS": "7",
        "SPIRAL_MAX_MEMORY_NODES": "50", "SPIRAL_GC_TIME_BUDGET_MS": "5.5",
        "SPIRAL_GC_TRIGGER_INTERVAL": "10", "SPIRAL_GC_RETENTION_S": "60",
        "SPIRAL_LOCK_TIMEOUT_S": "0.5", "SPIRAL_TOMBSTONE_TTL_S": "7200",
        "SPIRAL_DB_PATH": "/data/db",
    })
    assert settings.limits == Limits(3, 7, 50, 5.5, 10, 60.0, 0.5, 7200.0)
    assert settings.db_path == "/data/db"


def test_redis_url_selects_redis() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://h:1/2"})
    assert settings.storage is StorageKind.REDIS
    assert Settings.from_env({"REDIS_URL": "redis://h", "SPIRAL_STORAGE": "memory"}
                             ).storage is StorageKind.MEMORY


@pytest.mark.parametrize(("env", "message"), [
    ({"SPIRAL_MAX_MEMORY_NODES": "many"}, "SPIRAL_MAX_MEMORY_NODES='many'"),
    ({"SPIRAL_TURNS": "0"}, "spiral_turns must be at least 1"),
    ({"SPIRAL_GC_TIME_BUDGET_MS": "-1"}, "gc_time_budget_ms must be positive"),
    ({"SPIRAL_STORAGE": "mongo"}, "choose one of memory, level, redis"),
    ({"SPIRAL_STORAGE": "redis"}, "needs REDIS_URL"),
])
def test_bad_settings_fail_loudly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        Settings.from_env(env)
