"""What a Redis consumer needs to come back from a dropped or stalled connection without losing work.

Two hazards, both invisible in Dramatiq's own consumer:

- **Orphaned fetches.** A fetch that timed out on the client may still run on the server (the
  command sat in a stalled Redis's socket buffer): its messages move into this process's ack set
  and nobody holds them. Likewise the fetched-but-not-handed-out cache dies with a consumer that
  hit a connection error, and Dramatiq drops a ``.DQ`` consumer's in-memory delayed messages. Those
  messages would wait until this worker process dies and its ack set is recovered.
- **Silent ack failures.** Dramatiq retries an ack only on ``redis.ConnectionError``; a
  ``redis.TimeoutError`` (a stalled server) is logged as a bug and the ack is dropped.

:class:`InHand` tracks, per process and queue, the broker message ids a consumer has handed to
the worker and not yet acked, nacked or requeued. After any connection error the next consumer
of that queue *reconciles*: ids in the ack set that are not in hand are requeued (the requeue
script ignores ids already acked). It reconciles again a few seconds later (for a late fetch) and
then every minute, one SMEMBERS each time.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

logger = logging.getLogger("eventbus.redis")

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)

_AFTER_ERROR_S = (0.0, 2.0, 5.0)  # reconcile at once, then again for fetches that ran late
_STEADY_S = 60.0


class InHand:
    """Broker ids of one queue handed out by this process and not yet finished."""

    _registry: dict[tuple[str, str], InHand] = {}
    _registry_lock = threading.Lock()

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: set[str] = set()
        self.pending: set[str] = set()  # being taken by a fan-out script right now (not handed out yet)
        self.schedule: list[float] = []
        self.next_steady = time.monotonic() + _STEADY_S

    @classmethod
    def of(cls, broker_id: str, queue_name: str) -> InHand:
        """The shared record of ``queue_name`` for broker ``broker_id`` (one per process)."""
        with cls._registry_lock:
            found = cls._registry.get((broker_id, queue_name))
            if found is None:
                found = cls._registry[(broker_id, queue_name)] = InHand()
            return found

    def add(self, *message_ids: str) -> None:
        with self.lock:
            self.ids.update(message_ids)

    def discard(self, *message_ids: str) -> None:
        with self.lock:
            self.ids.difference_update(message_ids)

    def reserve(self, *message_ids: str) -> None:
        """Hold ids a script may put into this process's ack set, until :meth:`release`."""
        with self.lock:
            self.pending.update(message_ids)

    def release(self, *message_ids: str) -> None:
        with self.lock:
            self.pending.difference_update(message_ids)

    def discard_ids(self, message_ids: list[str]) -> None:
        """:meth:`discard`, taking a list (the callback of a written ack)."""
        self.discard(*message_ids)

    def clear(self) -> None:
        """Forget everything (a ``.DQ`` consumer restarted: Dramatiq dropped its delayed messages)."""
        with self.lock:
            self.ids.clear()

    def connection_lost(self) -> None:
        """Schedule reconciliations: at the next fetch, then twice more shortly after."""
        now = time.monotonic()
        with self.lock:
            self.schedule = [now + delay for delay in _AFTER_ERROR_S]

    def due(self) -> bool:
        now = time.monotonic()
        with self.lock:
            return bool(self.schedule and self.schedule[0] <= now) or now >= self.next_steady

    def reconcile(self, client: Any, acks_key: str, requeue: Any) -> list[str]:
        """Requeue the ids in ``acks_key`` this process does not hold; returns them."""
        members = {m.decode() if isinstance(m, bytes) else m for m in client.smembers(acks_key)}
        with self.lock:
            orphans = sorted(members - self.ids - self.pending)
            now = time.monotonic()
            self.schedule = [t for t in self.schedule if t > now]
            self.next_steady = now + _STEADY_S
        if orphans:
            requeue(orphans)
            logger.warning("requeued %d message(s) of %s orphaned by a connection error", len(orphans), acks_key)
        return orphans
