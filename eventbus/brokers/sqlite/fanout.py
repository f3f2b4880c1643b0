"""Fan-out inside the SQLite events consumer: a fetched batch of events becomes its deliveries in one transaction.

The consumer thread of the ``events`` queue does not hand events to worker threads. For each
fetched batch it plans every delivery (:func:`eventbus.delivery.plan_fanout`) and writes one
transaction that enqueues them (once-only, by delivery id) and deletes the events' rows. A crash
before that commit leaves the events leased to the dead process: they come back when the lease
runs out. Running a fan-out again enqueues nothing new, because its once-keys are taken. So a
fan-out costs no worker thread, no middleware pass, no start mark and no ack of its own.

An event that cannot be planned (a message no fan-out can read) is dead-lettered with the error,
in the same transaction; the rest of its batch goes on. Other actors' messages on the events
queue are handed to the worker as usual. The in-memory broker keeps the fan-out actor.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import traceback
from typing import TYPE_CHECKING

import dramatiq

from eventbus.brokers import Message
from eventbus.brokers.sqlite.consumer import SQLiteConsumer, SQLiteMessage
from eventbus.delivery import FANOUT_ACTOR, once_key, plan_fanout
from eventbus.errors import StoreBusy
from eventbus.ledger import fanout_record, worker_name
from eventbus.settings import get_settings

if TYPE_CHECKING:
    from eventbus.brokers.sqlite.broker import SQLiteBroker

logger = logging.getLogger("eventbus.fanout")

BATCH = 200  # events per fetch; their deliveries and the events' removal are one transaction


class FanoutConsumer(SQLiteConsumer):
    """The events queue's consumer: fans each fetched batch out itself, in one transaction."""

    def __init__(self, broker: SQLiteBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, max(prefetch, BATCH), timeout)
        self.settings = get_settings()
        self.ledger = broker.stores.ledger
        self.worker = worker_name()

    def _take(self) -> SQLiteMessage | None:
        """Fan out every fetched event; returns the first message of another actor, if one was fetched."""
        events: list[SQLiteMessage] = []
        other: SQLiteMessage | None = None
        while self.cache and other is None:
            proxy = self.cache.popleft()
            if proxy.actor_name == FANOUT_ACTOR:
                events.append(proxy)
            else:
                other = proxy
        if events:
            try:
                self._fan_out(events)
            except Exception as exc:
                self._give_back([e.row_id for e in events] + ([other.row_id] if other is not None else []))
                if isinstance(exc, (sqlite3.OperationalError, StoreBusy)):
                    raise  # reported as a connection error: the consumer restarts and fetches them again
                logger.exception("fan-out of %d event(s) failed; they will be fetched again", len(events))
                raise dramatiq.errors.ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        return other

    def _fan_out(self, events: list[SQLiteMessage]) -> None:
        deliveries: list[Message] = []
        done: list[SQLiteMessage] = []
        dead: list[tuple[int, Message]] = []
        for event in events:
            try:
                kwargs = event.kwargs
                deliveries += plan_fanout(kwargs["event"], kwargs.get("priority"), self.settings)
            except Exception as exc:
                dead.append((event.row_id, _dead_letter(event._message, exc)))
                continue
            done.append(event)
        self.broker.write(
            deliveries,
            [once_key(d) for d in deliveries],
            self.settings.dedup_window_s,
            done=[e.row_id for e in done],
            dead=dead,
        )
        self._acked([e.row_id for e in events])
        if self.ledger is not None:
            now = int(time.time() * 1000)
            for event in done:
                self.ledger.add(fanout_record(event._message, now, self.worker))
        for _, message in dead:
            logger.error(
                "dead-lettered event message %s on %r: cannot fan it out (%s)",
                message.message_id,
                self.queue_name,
                message.options["error"],
            )

    def _give_back(self, row_ids: list[int]) -> None:
        """After a failed fan-out: make the events visible again now, or (file unusable) when their lease ends."""
        try:
            with self.store.transaction() as conn:
                conn.executemany(
                    "UPDATE messages SET visible_at = 0, lease_owner = NULL WHERE id = ? AND lease_owner = ?",
                    [(row_id, self.broker.owner) for row_id in row_ids],
                )
        except (sqlite3.Error, StoreBusy):
            pass  # no longer renewed, the lease runs out by itself
        self._acked(row_ids)


def _dead_letter(message: Message, exc: Exception) -> Message:
    return message.copy(
        options={
            "dead_at": int(time.time() * 1000),
            "error": f"{type(exc).__name__}: {exc}",
            "error_type": type(exc).__name__,
            "traceback": "".join(traceback.format_exception(exc, limit=30)),
        }
    )
