"""Global per-queue concurrency caps and rate limits that wait instead of failing.

Before a job runs, its worker thread takes a slot of the queue's cap (waiting up to
``concurrency_wait_ms``) and then reserves the next rate-limit slot and sleeps until it. A job that
would wait longer goes back to the durable schedule for later, with its retry count untouched:
being limited is never a failed attempt and never a long backoff.

A freed slot goes to the most urgent job waiting for it: in this process, a job does not try for a
slot while one of higher priority waits for it; across processes, a more urgent job looks more often
(a CRITICAL one every 2-6 ms, NORMAL and LOW every 10-40 ms), so it is the likelier to take it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import dramatiq
from dramatiq.middleware import SkipMessage

from eventbus.brokers import BusBroker
from eventbus.priority import rank_of
from eventbus.queues import QueueConfig
from eventbus.settings import Settings

logger = logging.getLogger("eventbus")


class Leases:
    """Concurrency slots held by this process, renewed by the heartbeat until released."""

    def __init__(self) -> None:
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, queue: str, token: str) -> None:
        with self._lock:
            self._held[token] = queue

    def discard(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)

    def items(self) -> list[tuple[str, str]]:
        """``(queue, token)`` of every held slot."""
        with self._lock:
            return [(queue, token) for token, queue in self._held.items()]


LEASES = Leases()

# Seconds between tries for a cap slot, by priority rank (CRITICAL 0 ... LOW 3).
_POLL_S = {0: (0.002, 0.006), 1: (0.005, 0.015), 2: (0.01, 0.04), 3: (0.01, 0.04)}


class Waiters:
    """The priority ranks of this process's jobs waiting for a cap slot, per queue."""

    def __init__(self) -> None:
        self._ranks: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def waiting(self, queue: str, rank: int) -> Iterator[None]:
        """Count a job of ``rank`` as waiting for a slot of ``queue`` while the block runs."""
        with self._lock:
            self._ranks[queue][rank] += 1
        try:
            yield
        finally:
            with self._lock:
                self._ranks[queue][rank] -= 1

    def ahead(self, queue: str, rank: int) -> bool:
        """True while a job more urgent than ``rank`` waits for a slot of ``queue``."""
        with self._lock:  # a first waiter of a new rank adds a key: never iterate while it does
            ranks = self._ranks.get(queue)
            return ranks is not None and any(n > 0 for r, n in ranks.items() if r < rank)


WAITERS = Waiters()


class _QuietSkips(logging.Filter):
    """Drops Dramatiq's "was skipped" warning for jobs this middleware deferred (they are not errors)."""

    def __init__(self) -> None:
        super().__init__()
        self.deferred: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Message %s was skipped." and record.args:
            args: Any = record.args
            message_id = getattr(args[0], "message_id", None)
            if message_id in self.deferred:
                self.deferred.discard(message_id)
                return False
        return True


class QueueLimits(dramatiq.Middleware):
    """Applies ``settings.queue_config(queue).concurrency`` and ``.rate_limit`` across all workers (Redis, SQLite)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._quiet = _QuietSkips()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Installs the log filter for deferred jobs."""
        logging.getLogger("dramatiq.worker.WorkerThread").addFilter(self._quiet)

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """Waits for a slot of the queue's cap and its rate limit, or defers the job to the schedule."""
        limits = cast(BusBroker, broker).stores.limits
        config = self.settings.queue_config(message.queue_name)
        if config.concurrency:
            self._take_slot(broker, limits, message, config)
        if config.rate_limit:
            ok, wait_ms = limits.reserve(
                config.name, config.rate_limit.interval_ms, float(self.settings.rate_limit_max_wait_ms)
            )
            if not ok:
                self._release()
                self._defer(broker, message, int(wait_ms) + random.randint(0, 50))
            if wait_ms > 0:
                time.sleep(wait_ms / 1000)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Gives the cap's slot back."""
        self._release()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """Gives the cap's slot back (the job was deferred or skipped by another middleware)."""
        self._release()

    def _take_slot(self, broker: Any, limits: Any, message: dramatiq.MessageProxy, config: QueueConfig) -> None:
        holder = broker.stores.owner
        token = f"{holder}:{uuid.uuid4().hex}"
        ttl_ms = int(self.settings.heartbeat_timeout_s * 1000)
        deadline = time.monotonic() + self.settings.concurrency_wait_ms / 1000
        queue, rank = config.name, rank_of(message)
        with WAITERS.waiting(queue, rank):
            while WAITERS.ahead(queue, rank) or not limits.acquire(queue, config.concurrency, token, ttl_ms):
                if time.monotonic() >= deadline:
                    self._defer(broker, message, random.randint(100, 300))
                time.sleep(random.uniform(*_POLL_S[rank]))
        LEASES.add(queue, token)
        self._local.lease = (limits, queue, token)

    def _release(self) -> None:
        lease = getattr(self._local, "lease", None)
        if lease is None:
            return
        self._local.lease = None
        limits, queue, token = lease
        LEASES.discard(token)
        try:
            limits.release(queue, token)
        except Exception:  # the lease expires by itself; never fail a job over it
            logger.warning("could not release a concurrency slot of queue %r; it frees itself on expiry", queue)

    def _defer(self, broker: Any, message: dramatiq.MessageProxy, delay_ms: int) -> None:
        """Back to the schedule with the same retry count; this copy is acked by the skip."""
        broker.enqueue_many([message._message], delay_ms=delay_ms)
        self._quiet.deferred.add(message.message_id)
        raise SkipMessage(f"deferred {delay_ms} ms by the limits of queue {message.queue_name!r}")
