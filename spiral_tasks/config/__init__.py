"""Settings from the environment: read once per process, typed and checked.

    environment.py   typed reads of variables, every problem collected
    settings.py      the settings, grouped by what they govern
"""

from spiral_tasks.config.settings import (
    AuditSettings,
    BeatSettings,
    EncryptionSettings,
    GcPolicy,
    Limits,
    LockPolicy,
    MetricsSettings,
    OldSecret,
    PerfSettings,
    RetryPolicy,
    Settings,
    SigilSettings,
    StorageKind,
    TaskSettings,
    current,
)

__all__ = ["AuditSettings", "BeatSettings", "EncryptionSettings", "GcPolicy", "Limits",
           "LockPolicy", "MetricsSettings", "OldSecret", "PerfSettings", "RetryPolicy",
           "Settings", "SigilSettings", "StorageKind", "TaskSettings", "current"]
