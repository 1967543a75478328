"""The alternative that was measured and not chosen: kombu's filesystem transport with
its two races fixed, for `benchmarks.brokers` only.

- publish writes a hidden temporary file and renames it into the queue folder, so a
  consumer only ever sees complete files (kombu writes the final name directly);
- get claims by renaming the oldest file into this process's own `unacked/<pid>`
  folder, ack deletes it there, reject and restore rename it back (kombu moves the
  file out and deletes it before the task runs, so a crash loses it).

What it still lacks for production (and why it was not finished): release of a dead
process's `unacked/<pid>` folder at startup, expiry of dead processes' fanout
bindings in the exchange files, and a way to find the oldest message that does not
list and sort the whole folder on every get. Registered as `fs-atomic://` by
`register()`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.json import dumps, loads

SCHEME = "fs-atomic"


class QoS(virtual.QoS):
    def ack(self, delivery_tag: str) -> None:
        Path(delivery_tag).unlink(missing_ok=True)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            self.channel.put_back(delivery_tag)  # type: ignore[attr-defined]
        else:
            Path(delivery_tag).unlink(missing_ok=True)
        super().ack(delivery_tag)

    def restore_unacked(self) -> None:
        delivered = self._delivered
        assert delivered is not None
        while delivered:
            tag, _ = delivered.popitem()
            self.channel.put_back(tag)  # type: ignore[attr-defined]


class Channel(filesystem.Channel):
    QoS = QoS

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        folder = Path(self.data_folder_out)
        temporary = folder / f".{name}.tmp"
        temporary.write_text(dumps(payload))
        os.rename(temporary, folder / name)

    def _unacked(self) -> Path:
        folder = Path(self.data_folder_in).parent / "unacked" / str(os.getpid())
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}.msg"
        inbox = Path(self.data_folder_in)
        for name in sorted(os.listdir(inbox)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            claimed = self._unacked() / name
            try:
                os.rename(inbox / name, claimed)
            except FileNotFoundError:
                continue  # another consumer got it
            payload = loads(claimed.read_text())
            payload["properties"]["delivery_tag"] = str(claimed)
            return payload
        raise Empty()

    def put_back(self, tag: str) -> None:
        claimed = Path(tag)
        os.rename(claimed, Path(self.data_folder_in) / claimed.name)


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    TRANSPORT_ALIASES[SCHEME] = "benchmarks.fs_atomic:Transport"

