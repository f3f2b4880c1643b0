"""The consumer of one Redis queue: waits on the doorbell, hands out fetched and handed-over messages."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import dramatiq
import redis
from dramatiq.brokers.redis import _RedisConsumer

from eventbus.brokers import Message, malformed
from eventbus.brokers.redis.reconnect import REDIS_ERRORS, InHand
from eventbus.deadletter import nacked_options
from eventbus.settings import get_settings

if TYPE_CHECKING:
    from eventbus.brokers.redis.broker import RedisBroker

logger = logging.getLogger("eventbus.redis")

_COALESCE_S = 0.002
# An idle consumer wakes every worker_timeout (to notice a stop) but fetches without a ring only this
# often: the doorbell brings new work, and this poll only covers a ring lost to a reconnection.
_IDLE_POLL_S = 2.0


class RedisConsumer(_RedisConsumer):
    """Dramatiq's consumer, waiting on the doorbell instead of sleeping, and nacking fresh copies.

    Malformed messages are dead-lettered at the decode step (see ``eventbus.brokers.malformed``);
    connection errors *and* timeouts surface as ``ConnectionClosed`` (the worker retries acks and
    restarts the consumer); fetches orphaned by a connection error are requeued (see
    ``eventbus.brokers.redis.reconnect``).
    """

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self.bell = broker.doorbell.bell(queue_name)
        self.seen_rings = -1
        self.poll_at = 0.0
        self.full = False
        self.emptied = False
        self.refilling = False
        # Fetch again once this many slots are free: the worker threads never run dry, and a fetch
        # still brings several messages per round trip.
        self.batch = max(1, self.prefetch // 4)
        self.max_message_bytes = get_settings().max_message_bytes
        self.in_hand = InHand.of(broker.broker_id, queue_name)
        self.acks_key = broker.key(f"__acks__.{broker.broker_id}.{queue_name}")
        if queue_name.endswith(".DQ"):
            self.in_hand.clear()  # Dramatiq drops a .DQ consumer's delayed messages when it restarts
        else:
            broker.consumers[queue_name] = self
        self.handed = broker.handed.setdefault(queue_name, collections.deque())

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids) + len(self.message_cache) + len(self.handed)

    def room(self) -> int:
        """How many more messages this consumer could hand to the worker now."""
        return int(self.prefetch) - self.outstanding_message_count

    def wake(self) -> None:
        """Messages were handed over: hand them out at once (no coalescing wait, no fetch)."""
        self.refilling = True
        self.bell.event.set()

    def __next__(self) -> dramatiq.MessageProxy | None:
        try:
            while True:
                if self.handed:
                    return self._hand_out(self.handed.popleft())
                if self.message_cache:
                    proxy = self._take()
                    if proxy is not None:
                        return proxy
                    continue
                if self.in_hand.due():
                    self.in_hand.reconcile(
                        self.broker.client, self.acks_key, lambda ids: self.broker.do_requeue(self.queue_name, *ids)
                    )
                if self._fetch_due() and self._fetch():
                    continue
                if self.handed:  # handed over while this thread fetched (that wake was cleared)
                    continue
                self._wait()
                return None
        except REDIS_ERRORS as e:
            self.in_hand.connection_lost()
            raise dramatiq.errors.ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _fetch_due(self) -> bool:
        """Fetch unless the lists were found empty and nothing rang since (then the next message rings)."""
        return not self.emptied or self.bell.rings != self.seen_rings

    def _fetch(self) -> bool:
        """Fetch as many as there is room for (once a batch of slots is free); True if any came."""
        self.bell.event.clear()  # before fetching: a ring that lands after the fetch is not lost
        self.seen_rings = self.bell.rings
        self.poll_at = time.monotonic() + _IDLE_POLL_S
        free = self.prefetch - self.outstanding_message_count
        self.full = free < self.batch
        if self.full:
            return False
        fetched = self.broker.do_fetch(self.queue_name, free)
        if fetched:  # the last value names the careful ones (see eventbus.brokers.redis.recovery)
            careful = fetched.pop()
            if careful:
                self.broker.recovery.careful.update(careful.decode().split(","))
        self.message_cache = fetched
        # Fewer than asked for: the lists are empty now, so the next message rings. Wait for that
        # ring instead of fetching a trickle one message at a time.
        self.emptied = len(self.message_cache) < free
        return bool(self.message_cache)

    def _wait(self) -> None:
        """Sleep until a ring, a refill, a handover or the idle timeout."""
        if not self.bell.event.wait(self.timeout / 1000):
            if time.monotonic() >= self.poll_at:
                self.emptied = False  # no ring for a while: look once anyway
        else:
            self.bell.event.clear()  # taken; a ring after this still shows in ``rings``
            if self.bell.rings != self.seen_rings and not self.refilling and self.outstanding_message_count:
                # Work is in hand, so latency is not at stake: let rings coalesce into one fetch.
                time.sleep(_COALESCE_S)
        self.refilling = False

    def _take(self) -> dramatiq.MessageProxy | None:
        """The next fetched message for a worker thread (None: it was unusable and is dead-lettered)."""
        data = self.message_cache.pop(0)
        message = self._decode(data) if data is not None else None
        return self._hand_out(message) if message is not None else None

    def _hand_out(self, message: Message) -> dramatiq.MessageProxy:
        self.in_hand.add(message.options["redis_message_id"])
        self.queued_message_ids.add(message.message_id)
        return dramatiq.MessageProxy(message)

    def _decode(self, data: bytes) -> Message | None:
        """The message in ``data``, or None after moving unusable bytes to the dead letters."""
        try:
            message = malformed.decode(data, self.max_message_bytes)
        except malformed.MalformedMessage as exc:
            redis_id = self._find_id(data)
            if redis_id is not None:
                dead = malformed.dead_letter(data, self.queue_name, str(exc), redis_id)
                self.broker.do_nack(self.queue_name, redis_id, dead.encode())
            malformed.log_malformed(self.queue_name, str(exc))
            return None
        if "redis_message_id" not in message.options:  # pushed by hand: find its id so it can be acked
            redis_id = self._find_id(data)
            if redis_id is None:
                return None
            message = message.copy(options={"redis_message_id": redis_id})
        return message

    def _find_id(self, data: bytes) -> str | None:
        # Rare path: look the bytes up among this consumer's unacked messages (at most its prefetch).
        ids = list(self.broker.client.smembers(self.acks_key))
        if ids:
            values = self.broker.client.hmget(self.broker.key(f"{self.queue_name}.msgs"), ids)
            for redis_id, value in zip(ids, values):
                if value == data:
                    return redis_id.decode() if isinstance(redis_id, bytes) else str(redis_id)
        return None

    def ack(self, message: dramatiq.MessageProxy) -> None:
        """Group-committed with job starts (see :mod:`eventbus.brokers.group_commit`), and with the job's
        ledger completion, if the ledger keeps one."""
        done = self.broker.stores.take_completion(message.message_id)
        if done is not None:
            self.broker.completions.append(done)
        self.broker.writes.ack(self.queue_name, message.options["redis_message_id"], self.in_hand.discard_ids)
        self.queued_message_ids.discard(message.message_id)
        self._refill()

    def close(self) -> None:
        """Give back messages handed over or fetched but not handed out; write the acks still pending.

        The consumer thread stops between two messages of a fetch, so some may still be in the cache.
        """
        left = [self.handed.popleft().options["redis_message_id"] for _ in range(len(self.handed))]
        if left or self.message_cache:
            try:
                left += self._cached_ids()
                self._requeue_ids(left)
            except (dramatiq.errors.ConnectionClosed, *REDIS_ERRORS) as e:
                # Not in hand any more: the next consumer's reconciliation requeues them (or, if this
                # process is stopping, the janitor of another one).
                self.in_hand.discard(*left)
                self.in_hand.connection_lost()
                logger.warning("could not give back %d message(s) at close (%s); they will be requeued", len(left), e)
        try:
            self.broker.writes.flush()
        except redis.RedisError as e:
            n = len(self.broker.writes)
            logger.warning("could not write %d pending ack(s) at close (%s); those jobs will run again", n, e)

    def _cached_ids(self) -> list[str]:
        """Ids of the fetched messages still in the cache, which is left empty."""
        cached, self.message_cache = self.message_cache, []
        decoded = (self._decode(data) for data in cached if data is not None)
        return [message.options["redis_message_id"] for message in decoded if message is not None]

    def _refill(self) -> None:
        # A full consumer waits for a batch of slots to free up, then fetches at once (no coalescing:
        # its worker threads are about to run out of work).
        if self.full and self.prefetch - self.outstanding_message_count >= self.batch:
            self.refilling = True
            self.emptied = False
            self.bell.event.set()

    def nack(self, message: dramatiq.MessageProxy) -> None:
        exception = getattr(message, "_exception", None)
        data = message._message.copy(options=nacked_options(message.options, exception)).encode()
        redis_id = message.options["redis_message_id"]
        try:
            self.broker.writes.flush()  # its start mark first: the nack script clears it
            self.broker.do_nack(self.queue_name, redis_id, data)
        except REDIS_ERRORS as e:
            raise dramatiq.errors.ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
        finally:
            self.queued_message_ids.discard(message.message_id)
            self._refill()
        self.in_hand.discard(redis_id)

    def requeue(self, messages: Iterable[dramatiq.MessageProxy]) -> None:
        self._requeue_ids([m.options["redis_message_id"] for m in messages])

    def _requeue_ids(self, redis_ids: Sequence[str]) -> None:
        if not redis_ids:
            return
        try:
            self.broker.do_requeue(self.queue_name, *redis_ids)
        except REDIS_ERRORS as e:
            raise dramatiq.errors.ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
        self.in_hand.discard(*redis_ids)
        self.broker.recovery.careful.difference_update(redis_ids)  # unstarted: the next fetch decides again
