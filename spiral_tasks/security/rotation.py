"""Rotating a stored sigil key (no `SPIRAL_SIGIL_SECRET`): the steps
`spiral rotate-sigil-secret` takes before re-signing.

1. Announce: a new secret joins the accepted keys without signing anything yet.
2. Settle: wait until every process has read the keyring again (`refresh_s`), so
   every process accepts the new key before any signs with it.
3. Activate: the new secret signs; the old one is accepted until now + grace (not at
   all with a grace of 0: what to do when the secret leaked).
4. Settle again, so no process still signs with the old key when re-signing starts.

Without step 1, a process that had not yet read the new keyring would refuse the new
key's sigils for up to `refresh_s`. Each step is one atomic write of the keyring. A
run interrupted after step 1 finds the announced key and goes on with it rather
than announce another; one interrupted after step 3 is finished by
`--resign-only`. Run one rotation at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spiral_tasks.security.keyring import new_secret, read_stored, write_stored
from spiral_tasks.security.sigils import SigilKey
from spiral_tasks.storage.base import Storage


@dataclass(frozen=True)
class Rotation:
    previous_key_id: str
    key_id: str
    #: When the previous key stops being accepted (None: it already has).
    previous_until: float | None
    #: The new key had been announced by an interrupted run, and was taken up again.
    resumed: bool

    def to_json(self) -> dict[str, Any]:
        return {"previous_key_id": self.previous_key_id, "key_id": self.key_id,
                "previous_until": self.previous_until, "resumed": self.resumed}


def rotate_stored(storage: Storage, *, grace_s: float, now: Callable[[], float],
                  settle: Callable[[str], None]) -> Rotation:
    """Steps 1 to 4 above on the stored keyring. `settle(why)` waits until every
    process has read the keyring again (nothing to wait for when no other process
    can open the storage)."""
    secret, others = read_stored(storage)
    announced = next((k for k in others if k.until is None), None)
    resumed = announced is not None
    if announced is None:
        announced = SigilKey(new_secret().encode())
        write_stored(storage, secret, [*others, announced])
    settle("every process accepts the new key")
    previous = SigilKey(secret.encode(), until=now() + grace_s)
    kept = [k for k in others if k.until is not None and k.accepted_at(now())
            and k.kid != announced.kid]
    if grace_s > 0:
        kept.insert(0, previous)
    write_stored(storage, announced.secret.decode(), kept)
    settle("no process signs with the old key")
    return Rotation(previous_key_id=previous.kid, key_id=announced.kid,
                    previous_until=previous.until if grace_s > 0 else None,
                    resumed=resumed)
