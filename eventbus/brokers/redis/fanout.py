"""Fan-out inside the Redis events consumer: a fetched batch of events becomes its deliveries in one script call.

The consumer thread of the ``events`` queue does not hand events to worker threads. For each
fetched batch it plans every delivery (:func:`eventbus.delivery.plan_fanout`) and makes one
script call that enqueues them (once-only, by delivery id) and then acks the events. A crash
before that call leaves the events in this worker's ack set, where recovery finds them; a crash
after it is harmless, because running a fan-out again enqueues nothing new. So a fan-out costs no
worker thread, no middleware pass, no start mark and no separate ack: one round trip per batch.

An event that cannot be planned (a message no fan-out can read) is dead-lettered with the error.
Other actors' messages on the events queue are handed to the worker as usual.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import dramatiq
import redis

from eventbus.brokers import Message
from eventbus.brokers.redis.consumer import RedisConsumer
from eventbus.brokers.redis.reconnect import REDIS_ERRORS
from eventbus.deadletter import nacked_options
from eventbus.delivery import FANOUT_ACTOR, once_key, plan_fanout
from eventbus.ledger import JobState, fanout_record, transition, worker_name
from eventbus.priority import rank_of
from eventbus.settings import get_settings

if TYPE_CHECKING:
    from eventbus.brokers.redis.broker import RedisBroker

logger = logging.getLogger("eventbus.fanout")

BATCH = 200  # events per fetch; their deliveries go out in one script call (or one pipeline above 500)


class FanoutConsumer(RedisConsumer):
    """The events queue's consumer: fans each fetched batch out itself, in one round trip."""

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, max(prefetch, BATCH), timeout)
        self.settings = get_settings()
        self.ledger = broker.stores.ledger
        self.worker = worker_name()

    def _take(self) -> dramatiq.MessageProxy | None:
        """Fan out every fetched event; returns the first message of another actor, if one was fetched."""
        events: list[Message] = []
        other: Message | None = None
        while self.message_cache and other is None:
            data = self.message_cache.pop(0)
            message = self._decode(data) if data is not None else None
            if message is None:
                continue
            if message.actor_name == FANOUT_ACTOR:
                events.append(message)
            else:
                other = message
        if events:
            try:
                self._fan_out(events)
            except REDIS_ERRORS:
                raise
            except Exception as exc:  # a bug, not bad data: put the batch back through reconciliation
                self.in_hand.connection_lost()
                logger.exception("fan-out of %d event(s) failed; they will be fetched again", len(events))
                raise dramatiq.errors.ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        return self._hand_out(other) if other is not None else None

    def _fan_out(self, events: list[Message]) -> None:
        planned: list[tuple[Message, list[Message]]] = []
        for event in events:
            try:
                kwargs = event.kwargs
                planned.append((event, plan_fanout(kwargs["event"], kwargs.get("priority"), self.settings)))
            except Exception as exc:
                self._dead_letter(event, exc)
        if not planned:
            return
        try:
            self._write(planned)
        except redis.RedisError:
            raise
        except Exception:  # one event's deliveries cannot be written: find it, and let the others go on
            for item in planned:
                try:
                    self._write([item])
                except redis.RedisError:
                    raise
                except Exception as exc:
                    self._dead_letter(item[0], exc)

    def _write(self, planned: list[tuple[Message, list[Message]]]) -> None:
        """Enqueue the deliveries of ``planned`` events (most urgent first) and ack those events."""
        deliveries = sorted((d for _, ds in planned for d in ds), key=rank_of)
        consumers = self.broker.consumers
        take = {q: consumers[q].room() for q in {d.queue_name for d in deliveries} if q in consumers}
        _, taken = self.broker.write(
            deliveries,
            [once_key(d) for d in deliveries],
            self.settings.dedup_window_s,
            ack=(self.queue_name, [e.options["redis_message_id"] for e, _ in planned]),
            take=take,
        )
        for delivery in taken:
            self.broker.handed[delivery.queue_name].append(delivery)
        for queue in {d.queue_name for d in taken}:
            consumers[queue].wake()
        if self.ledger is not None:
            now = int(time.time() * 1000)
            for event, _ in planned:
                self.ledger.add(fanout_record(event, now, self.worker))

    def _dead_letter(self, message: Message, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        dead = message.copy(options=nacked_options({"attempts": 1}, exc))
        self.broker.do_nack(self.queue_name, message.options["redis_message_id"], dead.encode())
        if self.ledger is not None:
            self.ledger.add(
                transition(
                    dead,
                    JobState.DEAD,
                    1,
                    finished_at_ms=dead.options["dead_at"],
                    error=error,
                    traceback=dead.options["traceback"],
                )
            )
        logger.error(
            "dead-lettered event message %s on %r: cannot fan it out (%s)", message.message_id, self.queue_name, error
        )
