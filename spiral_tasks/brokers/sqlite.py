"""A kombu transport on one SQLite file: the embedded deployment's broker.

    spiral-sqlite:///absolute/path/broker.sqlite3

Built on kombu's virtual transport (exchanges, routing and consumers are kombu's);
the state every process must share lives in `MessageStore` (messages, claims,
queues, bindings), so it works across processes: producers, the worker, `celery
inspect`, Flower. What it adds to kombu's own file and SQL transports, whose flaws
are why it exists (see the README's embedded deployment):

- a message is one row, written by one transaction: no consumer sees it half written;
- a delivery is a claim, not a removal: acknowledged means deleted, rejected or
  unacknowledged at shutdown means released, and the claims of a process that died
  (SIGKILL, OOM) are released by the next process that connects, or by a running
  one within `REAP_INTERVAL_S`; so late acks redeliver after a crash;
- fanout and topic bindings are shared, so remote control and task events work, and
  the private queues of dead processes are dropped, so they do not pile up.

Consumers poll (SQLite cannot notify another process); an acknowledgement in this
process wakes the polling consumer at once, so a busy worker takes its next message
without waiting out the polling interval.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import virtual
from kombu.utils.json import dumps, loads

from spiral_tasks.brokers.store import Binding, Claimed, MessageStore, shared_store
from spiral_tasks.brokers.urls import database_path

#: Seconds an idle consumer waits between two looks at its queues.
DEFAULT_POLLING_INTERVAL_S = 0.02


class QoS(virtual.QoS):
    """Acknowledgements go to the store: ack deletes the claimed row, reject and
    restore release it. kombu's default restore would publish a copy instead, which
    a crash between the copy and the removal would duplicate or lose."""

    channel: Channel

    def ack(self, delivery_tag: str) -> None:
        self.channel.store.ack(delivery_tag)
        super().ack(delivery_tag)
        self.channel.wake()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            self.channel.store.release(delivery_tag)
        else:
            self.channel.store.ack(delivery_tag)
        super().ack(delivery_tag)  # forget it here; the store did the rest
        self.channel.wake()

    def restore_unacked(self) -> list[tuple[BaseException, Any]]:  # type: ignore[override]
        """Release every message this channel holds unacknowledged."""
        self._flush()  # type: ignore[attr-defined]  # kombu's, missing from the stubs
        delivered = self._delivered
        assert delivered is not None
        errors: list[tuple[BaseException, Any]] = []
        while delivered:
            try:
                tag, message = delivered.popitem()
            except KeyError:  # emptied by another thread meanwhile
                break
            try:
                self.channel.store.release(tag)
            except Exception as exc:
                errors.append((exc, message))
        return errors


class Channel(virtual.Channel):
    """Queues, bindings and messages in the store; exchange types and consumers as
    kombu's virtual channel keeps them."""

    QoS = QoS
    supports_fanout = True
    connection: Transport

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.store: MessageStore = connection.store
        #: Queues consumed without acknowledgements: their messages are deleted as
        #: they are read (remote-control replies, event receivers).
        self._no_ack_queues: set[str] = set()

    def wake(self) -> None:
        """Let this process's consumer look for its next message now (a pool thread
        may acknowledge after the channel closed: then there is no one to wake)."""
        transport: Transport | None = self.connection
        if transport is not None:
            transport.wake()

    # --- publishing -----------------------------------------------------------------

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        self.store.publish(queue, dumps(message))

    def _put_fanout(self, exchange: str, message: Any, routing_key: str,
                    **kwargs: Any) -> None:
        self.store.publish_many({b.queue for b in self.store.table(exchange)},
                                dumps(message))

    # --- consuming ------------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, callback: Callable[..., Any] | None,
                      consumer_tag: str | None, **kwargs: Any) -> str:
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        if queue is not None:
            self._no_ack_queues.discard(queue)
        return super().basic_cancel(consumer_tag)

    def basic_get(self, queue: str, no_ack: bool = False,
                  **kwargs: Any) -> virtual.Message | None:
        raw = self._take(queue) if no_ack else self._claim(queue)
        if raw is None:
            return None
        message = self.Message(raw, channel=self)
        if not no_ack:
            self.qos.append(message, str(message.delivery_tag))
        return message

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        self.store.maybe_reap()
        raw = self._take(queue) if queue in self._no_ack_queues else self._claim(queue)
        if raw is None:
            raise Empty()
        return raw

    def _claim(self, queue: str) -> dict[str, Any] | None:
        claimed: Claimed | None = self.store.claim(queue)
        if claimed is None:
            return None
        raw: dict[str, Any] = loads(claimed.payload)
        properties = raw["properties"]
        # The tag names this delivery's claim: ack and reject act on the row through it.
        properties["delivery_tag"] = claimed.tag
        properties.setdefault("delivery_info", {})["redelivered"] = claimed.deliveries > 1
        return raw

    def _take(self, queue: str) -> dict[str, Any] | None:
        payload = self.store.take(queue)
        return None if payload is None else dict(loads(payload))

    # --- queues and bindings --------------------------------------------------------

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        private = bool(kwargs.get("auto_delete") or kwargs.get("exclusive"))
        self.store.declare_queue(queue, private=private)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.store.has_queue(queue)

    def _size(self, queue: str) -> int:
        return self.store.size(queue)

    def _purge(self, queue: str) -> int:
        return self.store.purge(queue)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str | None,
                    queue: str) -> None:
        self.store.bind(Binding(exchange, routing_key or "", pattern or "", queue))

    def get_table(self, exchange: str) -> list[tuple[str, str, str]]:
        return [(b.routing_key, b.pattern, b.queue) for b in self.store.table(exchange)]

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                     arguments: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.state.binding_delete(queue, exchange or "", routing_key)
        self.store.unbind(exchange or "", routing_key or "", queue)

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False,
                     **kwargs: Any) -> int | None:
        if if_empty and self._size(queue):
            return None
        self.store.delete_queue(queue)
        self.state.queue_bindings_delete(queue)
        return None


class Transport(virtual.Transport):
    """kombu transport `spiral-sqlite://<path of the SQLite file>`.

    Transport options: `polling_interval` (seconds an idle consumer sleeps between
    looks, default 0.02), `visibility_timeout` (seconds after which a claim is
    released even if its process cannot be judged dead, default 3600).
    """

    Channel = Channel
    can_parse_url = True
    default_port = 0
    driver_type = "sqlite"
    driver_name = "spiral-sqlite"
    polling_interval = DEFAULT_POLLING_INTERVAL_S
    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"]))
    #: "database is locked" after the busy timeout, a vanished folder: the worker
    #: reconnects (and releases what it held) instead of stopping.
    connection_errors = (*virtual.Transport.connection_errors, sqlite3.OperationalError)
    channel_errors = (*virtual.Transport.channel_errors, sqlite3.DatabaseError)

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        self.store = shared_store(database_path(client.hostname),
                                  float(options.get("visibility_timeout", 3600)))
        self._wakeup = threading.Event()

    def establish_connection(self) -> Any:
        # A consumer starting is when a crashed one's claims are looked for first.
        self.store.reap()
        return super().establish_connection()

    def wake(self) -> None:
        """Something changed that may let a consumer of this process take a message."""
        self._wakeup.set()

    def drain_events(self, connection: Any, timeout: float | None = None,
                     **kwargs: Any) -> None:
        """kombu's loop, but sleeping on the wake-up event instead of a fixed sleep."""
        started = monotonic()
        assert self.cycle is not None
        while True:
            self._wakeup.clear()
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                elapsed = monotonic() - started
                if timeout is not None and elapsed >= timeout:
                    raise TimeoutError() from None
                wait = self.polling_interval or 0.0
                if timeout is not None:
                    wait = min(wait, timeout - elapsed)
                self._wakeup.wait(wait)

    def driver_version(self) -> str:
        return sqlite3.sqlite_version
