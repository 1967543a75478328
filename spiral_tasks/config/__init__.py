"""Settings from the environment: read once per process, typed and checked.

    environment.py   typed reads of variables, every problem collected
    settings.py      the settings, grouped by what they govern
"""

from spiral_tasks.config.settings import (
    BeatSettings,
    EncryptionSettings,
    GcPolicy,
    Limits,
    LockPolicy,
    MetricsSettings,
    PerfSettings,
    RetryPolicy,
    Settings,
    StorageKind,
    TaskSettings,
    current,
)

__all__ = ["BeatSettings", "EncryptionSettings", "GcPolicy", "Limits", "LockPolicy",
           "MetricsSettings",
           "PerfSettings", "RetryPolicy", "Settings", "StorageKind", "TaskSettings", "current"]
