"""Portable backups: a store's tenants as JSON lines, restorable into any backend.

    fileformat.py   the file: header, one line per key or index entry, checksum;
                    `verify` refuses anything incomplete or altered
    snapshot.py     taking one, tenant by tenant under each tenant's lock
    restore.py      writing one back, only after the whole file checked out
"""

from spiral_tasks.backup.fileformat import BackupRefused, Header, verify
from spiral_tasks.backup.restore import RestoreSummary, TargetNotEmpty, restore
from spiral_tasks.backup.snapshot import BackupSummary, take

__all__ = ["BackupRefused", "BackupSummary", "Header", "RestoreSummary", "TargetNotEmpty",
           "restore", "take", "verify"]
