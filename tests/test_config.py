from __future__ import annotations

import base64
from pathlib import Path

import pytest

from spiral_tasks.config import (
    AuditSettings,
    BeatSettings,
    EncryptionSettings,
    GcPolicy,
    Limits,
    LockPolicy,
    MetricsSettings,
    OldSecret,
    PerfSettings,
    Settings,
    SigilSettings,
    StorageKind,
)
from spiral_tasks.errors import ConfigError
from spiral_tasks.testing.encryption import new_key, text


def test_defaults_are_the_runbooks() -> None:
    settings = Settings.from_env({})
    assert settings.limits == Limits(89, 21, 2618)
    assert settings.gc == GcPolicy(25.0, 100, 3600.0, 86400.0, switch_interval_ms=0.5)
    assert settings.locks == LockPolicy(wait_s=2.0, ttl_s=2.0, unsafe_unlocked=False)
    assert settings.storage is StorageKind.LEVEL
    assert settings.db_path == "./spiraldb"


def test_every_limit_is_overridable() -> None:
    settings = Settings.from_env({
        "SPIRAL_MAX_MEMORY_SPIRALS": "3", "SPIRAL_TURNS": "7",
        "SPIRAL_MAX_MEMORY_NODES": "50", "SPIRAL_GC_TIME_BUDGET_MS": "5.5",
        "SPIRAL_GC_TRIGGER_INTERVAL": "10", "SPIRAL_GC_RETENTION_S": "60",
        "SPIRAL_LOCK_TIMEOUT_S": "0.5", "SPIRAL_LOCK_TTL_S": "1.5",
        "SPIRAL_TOMBSTONE_TTL_S": "7200", "SPIRAL_VISIBILITY_TIMEOUT_S": "600",
        "SPIRAL_DB_PATH": "/data/db", "SPIRAL_GC_SWITCH_INTERVAL_MS": "1",
    })
    assert settings.limits == Limits(3, 7, 50)
    assert settings.gc == GcPolicy(5.5, 10, 60.0, 7200.0, switch_interval_ms=1.0)
    assert settings.locks == LockPolicy(wait_s=0.5, ttl_s=1.5)
    assert settings.tasks.visibility_timeout_s == 600
    assert settings.db_path == "/data/db"


def test_gc_slices_may_be_left_to_the_interpreter_but_not_lengthened() -> None:
    assert Settings.from_env({"SPIRAL_GC_SWITCH_INTERVAL_MS": "0"}).gc.switch_interval_ms == 0
    for bad in ("-1", "6", "nan", "soon"):
        with pytest.raises(ConfigError, match="SPIRAL_GC_SWITCH_INTERVAL_MS"):
            Settings.from_env({"SPIRAL_GC_SWITCH_INTERVAL_MS": bad})


def test_the_perf_workload_is_the_runbooks() -> None:
    assert Settings.from_env({}).perf == PerfSettings(iterations=1000, concurrency=8)
    assert Settings.from_env({"PERF_ITERATIONS": "2000", "PERF_CONCURRENCY": "50"}).perf \
        == PerfSettings(iterations=2000, concurrency=50)


def test_metrics_are_served_on_9099_unless_told_otherwise() -> None:
    assert Settings.from_env({}).metrics == MetricsSettings(port=9099, multiproc_dir=None)
    assert Settings.from_env({"METRICS_PORT": "0", "PROMETHEUS_MULTIPROC_DIR": "/run/m"}
                             ).metrics == MetricsSettings(port=0, multiproc_dir="/run/m")


def test_beat_defaults_and_overrides() -> None:
    # No lock timeout by default: beat derives it from the max interval it runs with.
    assert Settings.from_env({}).beat == BeatSettings(60.0, "0 2 * * *", 10.0, None)
    beat = Settings.from_env({"SPIRAL_GC_EVERY_S": "3", "SPIRAL_BEAT_MAX_INTERVAL_S": "0.5",
                              "SPIRAL_BEAT_LOCK_TIMEOUT_S": "1.1"}).beat
    assert beat == BeatSettings(3.0, "0 2 * * *", 0.5, 1.1)


def test_the_audit_log_is_on_and_kept_for_ever_unless_told_otherwise() -> None:
    assert Settings.from_env({}).audit == AuditSettings(enabled=True, key=None,
                                                         retention_s=0.0)
    audit = Settings.from_env({"SPIRAL_AUDIT": "0", "SPIRAL_AUDIT_KEY": "k" * 64,
                               "SPIRAL_AUDIT_RETENTION_S": "2592000"}).audit
    assert audit == AuditSettings(enabled=False, key="k" * 64, retention_s=2592000.0)
    assert "k" * 64 not in repr(audit)


def test_redis_url_selects_redis() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://h:1/2"})
    assert settings.storage is StorageKind.REDIS
    assert Settings.from_env({"REDIS_URL": "redis://h", "SPIRAL_STORAGE": "memory"}
                             ).storage is StorageKind.MEMORY


@pytest.mark.parametrize(("env", "message"), [
    ({"SPIRAL_MAX_MEMORY_NODES": "many"}, "SPIRAL_MAX_MEMORY_NODES='many': expected a whole"),
    ({"SPIRAL_TURNS": "0"}, "SPIRAL_TURNS='0': must be at least 1"),
    ({"SPIRAL_GC_TIME_BUDGET_MS": "-1"}, "SPIRAL_GC_TIME_BUDGET_MS='-1': must be a finite"),
    ({"SPIRAL_GC_TIME_BUDGET_MS": "inf"}, "SPIRAL_GC_TIME_BUDGET_MS='inf': must be a finite"),
    ({"SPIRAL_GC_TIME_BUDGET_MS": "1e30"}, "SPIRAL_GC_TIME_BUDGET_MS='1e30': must be at most"),
    ({"SPIRAL_STORAGE": "mongo"}, "choose one of memory, level, redis"),
    ({"SPIRAL_STORAGE": "redis"}, "redis storage needs REDIS_URL"),
    ({"SPIRAL_VISIBILITY_TIMEOUT_S": "1h"}, "SPIRAL_VISIBILITY_TIMEOUT_S='1h': expected a whole"),
    ({"SPIRAL_GC_EVERY_S": "soon"}, "SPIRAL_GC_EVERY_S='soon': expected a number of seconds"),
    ({"REDIS_URL": "redis://host:6379/0/0"}, "REDIS_URL='redis://host:6379/0/0': the path"),
    ({"REDIS_URL": "redis://host:port/0"}, "REDIS_URL='redis://host:port/0': not a valid URL"),
    ({"REDIS_URL": "http://host/0"}, "REDIS_URL='http://host/0': scheme must be"),
    ({"SPIRAL_REBUILD_CRON": "0 2 *"}, "SPIRAL_REBUILD_CRON='0 2 *': expected 5"),
    ({"SPIRAL_UNSAFE_UNLOCKED": "maybe"}, "SPIRAL_UNSAFE_UNLOCKED='maybe'"),
    ({"SPIRAL_TOMBSTONE_TTL_S": "60"}, "SPIRAL_TOMBSTONE_TTL_S='60': must be at least SPIRAL_VIS"),
    ({"SPIRAL_BEAT_MAX_INTERVAL_S": "10", "SPIRAL_BEAT_LOCK_TIMEOUT_S": "15"},
     "SPIRAL_BEAT_LOCK_TIMEOUT_S='15': must exceed twice SPIRAL_BEAT_MAX_INTERVAL_S"),
    ({"SPIRAL_BEAT_LOCK_TIMEOUT_S": "20"},
     "SPIRAL_BEAT_LOCK_TIMEOUT_S='20': must exceed twice SPIRAL_BEAT_MAX_INTERVAL_S (10 s)"),
    ({"SPIRAL_RETRY_BACKOFF_BASE_S": "9"}, "must not exceed SPIRAL_RETRY_BACKOFF_MAX_S"),
    ({"SPIRAL_LOCK_TTL_S": "0.0004"}, "SPIRAL_LOCK_TTL_S='0.0004': must be a finite number "
     "above 0.1"),
    ({"SPIRAL_GC_TIME_BUDGET_MS": "60000", "SPIRAL_GC_TIME_LIMIT_S": "61"},
     "must be below the GC task's soft time limit (56 s"),
    ({"PERF_ITERATIONS": "lots"}, "PERF_ITERATIONS='lots': expected a whole number"),
    ({"PERF_ITERATIONS": "0"}, "PERF_ITERATIONS='0': must be at least 1"),
    ({"PERF_CONCURRENCY": "5000"}, "PERF_CONCURRENCY='5000': must be at most 1000"),
    ({"METRICS_PORT": "http"}, "METRICS_PORT='http': expected a whole number"),
    ({"METRICS_PORT": "70000"}, "METRICS_PORT='70000': must be at most 65535"),
    ({"METRICS_PORT": "-1"}, "METRICS_PORT='-1': must be at least 0"),
    ({"SPIRAL_AUDIT": "maybe"}, "SPIRAL_AUDIT='maybe': expected 1/0"),
    ({"SPIRAL_AUDIT_RETENTION_S": "0"}, "SPIRAL_AUDIT_RETENTION_S='0': must be a finite "
     "number above 0"),
    ({"SPIRAL_AUDIT_RETENTION_S": "a week"}, "SPIRAL_AUDIT_RETENTION_S='a week': expected"),
])
def test_a_bad_setting_is_named_with_its_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)


def test_every_bad_setting_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SPIRAL_TURNS": "x", "SPIRAL_GC_EVERY_S": "-3",
                           "REDIS_URL": "redis://h:1/a"})
    assert [p.split("=")[0] for p in caught.value.problems] == [
        "REDIS_URL", "SPIRAL_TURNS", "SPIRAL_GC_EVERY_S"]


def test_a_huge_value_is_quoted_short() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SPIRAL_TURNS": "9" * 10_000 + "x"})
    assert len(str(caught.value)) < 200


def test_old_sigil_secrets_are_read_with_their_times() -> None:
    sigils = Settings.from_env({
        "SPIRAL_SIGIL_SECRET": "current",
        "SPIRAL_SIGIL_OLD_SECRETS": "older@2026-01-31T00:00:00Z, next ,",
        "SPIRAL_SIGIL_REFRESH_S": "0.5",
    }).sigils
    assert sigils.secret == "current"
    assert sigils.old_secrets == (OldSecret("older", 1769817600.0), OldSecret("next", None))
    assert sigils.refresh_s == 0.5
    assert Settings.from_env({}).sigils == SigilSettings(None, (), 5.0)


def test_bad_old_sigil_secrets_are_named_by_position_never_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SPIRAL_SIGIL_SECRET": "current-s3cret",
                           "SPIRAL_SIGIL_OLD_SECRETS":
                               "first-s3cret@tomorrow,current-s3cret,a b,x-s3cret,x-s3cret"})
    message = str(caught.value)
    assert "entry 1: what follows @ must be an ISO 8601 time with its zone" in message
    assert "holds the secret SPIRAL_SIGIL_SECRET already names" in message
    assert "entry 3: a secret must be non-empty and hold no spaces" in message
    assert "entry 5: the same secret as an earlier one" in message
    assert "s3cret" not in message
    with pytest.raises(ConfigError, match="zone"):  # a time without its zone is ambiguous
        Settings.from_env({"SPIRAL_SIGIL_SECRET": "c",
                           "SPIRAL_SIGIL_OLD_SECRETS": "o@2026-01-31T00:00:00"})


def test_old_sigil_secrets_need_a_configured_one() -> None:
    with pytest.raises(ConfigError, match="read only beside SPIRAL_SIGIL_SECRET"):
        Settings.from_env({"SPIRAL_SIGIL_OLD_SECRETS": "old"})


def test_settings_never_show_the_sigil_secrets() -> None:
    settings = Settings.from_env({"SPIRAL_SIGIL_SECRET": "top-s3cret",
                                  "SPIRAL_SIGIL_OLD_SECRETS": "old-s3cret"})
    assert "s3cret" not in repr(settings)
    assert settings.sigil_secret == "top-s3cret"


# --- encryption keys: named when wrong, never shown ---------------------------------

def test_encryption_keys_come_from_variables_or_files(tmp_path: Path) -> None:
    sealing, first, second = new_key(), new_key(), new_key()
    (tmp_path / "key").write_text(text(sealing) + "\n")
    urlsafe = base64.urlsafe_b64encode(second).decode()
    (tmp_path / "old").write_text(f"{text(first)}\n{urlsafe}\n")
    from_files = Settings.from_env({"SPIRAL_ENCRYPTION_KEY_FILE": str(tmp_path / "key"),
                                    "SPIRAL_DECRYPTION_KEYS_FILE": str(tmp_path / "old")})
    assert from_files.encryption == EncryptionSettings(sealing, (first, second))
    from_variables = Settings.from_env({"SPIRAL_ENCRYPTION_KEY": text(sealing),
                                        "SPIRAL_DECRYPTION_KEYS": f"{text(first)}, {urlsafe}"})
    assert from_variables.encryption == from_files.encryption
    assert Settings.from_env({}).encryption == EncryptionSettings()
    opens_only = Settings.from_env({"SPIRAL_DECRYPTION_KEYS": text(first)}).encryption
    assert opens_only == EncryptionSettings(None, (first,))
    assert opens_only.enabled
    assert not EncryptionSettings().enabled
    for key in (sealing, first, second):
        assert text(key) not in repr(from_files)
        assert key.hex() not in repr(from_files)


SECRET = text(new_key())


@pytest.mark.parametrize(("env", "message"), [
    ({"SPIRAL_ENCRYPTION_KEY": SECRET[:20]},
     "SPIRAL_ENCRYPTION_KEY=<hidden, 20 characters>: expected 32 random bytes in base64"),
    ({"SPIRAL_ENCRYPTION_KEY": SECRET[:-2] + "*="},
     "SPIRAL_ENCRYPTION_KEY=<hidden, 44 characters>: expected 32 random bytes in base64"),
    ({"SPIRAL_ENCRYPTION_KEY": f"{SECRET},{SECRET}"},
     "SPIRAL_ENCRYPTION_KEY=<hidden, 89 characters>: expected one key, found 2"),
    ({"SPIRAL_ENCRYPTION_KEY": SECRET, "SPIRAL_DECRYPTION_KEYS": f"{SECRET},{SECRET[:9]}"},
     "SPIRAL_DECRYPTION_KEYS=<hidden, 54 characters>: key 2: expected 32 random bytes"),
    ({"SPIRAL_ENCRYPTION_KEY": SECRET, "SPIRAL_ENCRYPTION_KEY_FILE": "/etc/spiral/key"},
     "SPIRAL_ENCRYPTION_KEY_FILE='/etc/spiral/key': set SPIRAL_ENCRYPTION_KEY or "
     "SPIRAL_ENCRYPTION_KEY_FILE, not both"),
    ({"SPIRAL_ENCRYPTION_KEY_FILE": "/nonexistent/key"},
     "SPIRAL_ENCRYPTION_KEY_FILE='/nonexistent/key': cannot read the key file: No such file"),
])
def test_a_bad_key_is_named_and_never_shown(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)
    for size in (9, 20, 43):
        assert SECRET[:size] not in str(caught.value)
