"""``memory://``: Dramatiq's StubBroker with the bus's stores, for unit tests (one process).

Each queue is a :class:`~eventbus.brokers.memory.lanes.Lanes`, so a consumer always takes the most
urgent priority first; delayed messages and retries wait in the :class:`MemorySchedule` until due,
when the queue's consumer releases them. The broker builds its stores in its constructor: the
ledger, the control plane's store, dead letters, the schedule and the limits.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker, _StubMessageProxy
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import QueueNotFound

from eventbus.brokers import Message
from eventbus.brokers.hooks import HookCache
from eventbus.brokers.memory.control import MemoryControlStore
from eventbus.brokers.memory.deadletters import MemoryDeadLetters
from eventbus.brokers.memory.lanes import Lanes
from eventbus.brokers.memory.ledger import MemoryLedger
from eventbus.brokers.memory.limits import MemoryLimits
from eventbus.brokers.memory.schedule import MemorySchedule
from eventbus.brokers.memory.stores import MemoryStores
from eventbus.ledger import canonical_queue
from eventbus.priority import rank_of
from eventbus.retention import Retention
from eventbus.settings import Settings, get_settings


class MemoryBroker(HookCache, StubBroker):
    """In-process broker: nothing persists; every store lives in this object, behind one lock."""

    queues: dict[str, Lanes]

    def __init__(self, middleware: list[dramatiq.Middleware] | None = None, settings: Settings | None = None) -> None:
        super().__init__(middleware, fail_fast_default=False)
        self.namespace = "memory"
        self.lock = threading.RLock()
        self._once: dict[str, float] = {}
        self._paused: set[str] = set()
        self.running: dict[str, bytes] = {}  # message id -> data, while a worker holds the message
        self.ledger = MemoryLedger(self.lock, Retention.from_settings(settings or get_settings()))
        self.dead = MemoryDeadLetters(self.lock)
        self.schedule = MemorySchedule(self.lock, self._put)
        self.limits = MemoryLimits(self.lock)
        self.control_store = MemoryControlStore(self)
        self.stores = MemoryStores(self, settings or get_settings())

    def declare_queue(self, queue_name: str) -> None:
        """Declare ``queue_name`` and its ``.DQ`` twin (Dramatiq's workers consume both)."""
        if queue_name in self.queues:
            return
        self.emit_before("declare_queue", queue_name)
        self.queues[queue_name] = Lanes()
        self.emit_after("declare_queue", queue_name)
        delayed = dq_name(queue_name)
        self.queues[delayed] = Lanes()
        self.delay_queues.add(delayed)
        self.emit_after("declare_delay_queue", delayed)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 100) -> dramatiq.Consumer:
        if queue_name not in self.queues:
            raise QueueNotFound(queue_name)  # type: ignore[no-untyped-call]
        return MemoryConsumer(self, queue_name, prefetch, timeout)

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Enqueue now, or into the schedule when ``delay`` (ms) is given (retries come this way)."""
        if canonical_queue(message.queue_name) not in self.queues:
            raise QueueNotFound(message.queue_name)  # type: ignore[no-untyped-call]
        return self.enqueue_many([message], delay_ms=delay)[0]

    def enqueue_many(
        self,
        messages: Sequence[Message],
        *,
        delay_ms: int | None = None,
        once_keys: Sequence[str | None] | None = None,
        once_ttl_s: int = 86_400,
    ) -> list[Message]:
        """See :class:`eventbus.brokers.BusBroker`."""
        staged = []
        for message in messages:
            if delay_ms is not None:
                message = message.copy(
                    queue_name=dq_name(message.queue_name), options={"eta": current_millis() + delay_ms}
                )
            if message.queue_name not in self.queues:
                self.declare_queue(canonical_queue(message.queue_name))
            staged.append((message, message.encode()))
        keys = list(once_keys) if once_keys is not None else [None] * len(staged)
        now = time.monotonic()
        out = []
        with self.lock:
            for (message, data), key in zip(staged, keys):
                if key is not None:
                    if self._once.get(key, 0.0) > now:
                        continue
                    self._once[key] = now + once_ttl_s
                self.emit_before("enqueue", message, delay_ms)
                if "eta" in message.options:
                    self.schedule.add(message, int(message.options["eta"]))
                else:
                    self.queues[message.queue_name].put((rank_of(message), data))
                self.emit_after("enqueue", message, delay_ms)
                out.append(message)
        return out

    def _put(self, message: Message) -> None:
        """Put a released scheduled message in its queue."""
        if message.queue_name not in self.queues:
            self.declare_queue(message.queue_name)
        self.queues[message.queue_name].put((rank_of(message), message.encode()))

    def put_back(self, message: dramatiq.MessageProxy) -> None:
        """Hand a fetched message back to the head of its priority (a paused queue's, see ``PauseGate``)."""
        self.queues[message.queue_name].put_front((rank_of(message), message._message.encode()))

    # -- pause ----------------------------------------------------------------------------------

    def pause(self, queue: str) -> None:
        with self.lock:
            self._paused.add(queue)

    def resume(self, queue: str) -> None:
        with self.lock:
            self._paused.discard(queue)

    def paused_queues(self) -> set[str]:
        with self.lock:
            return set(self._paused)

    def dead_letter(self, queue_name: str, message: dramatiq.MessageProxy) -> None:
        """Keep a message out of attempts as the worker saw it: final retries, error and traceback."""
        exception = getattr(message, "_exception", None)
        now = current_millis()
        options: dict[str, Any] = {"dead_at": now}
        if exception is not None:
            options["error"] = f"{type(exception).__name__}: {exception}"
            options["error_type"] = type(exception).__name__
            if "traceback" not in message.options:
                options["traceback"] = "".join(traceback.format_exception(exception, limit=30))
        self.dead.add(queue_name, message._message.copy(options=options).encode(), now)


class MemoryConsumer(dramatiq.Consumer):
    """Takes the most urgent waiting message of one queue; a paused queue hands out nothing."""

    def __init__(self, broker: MemoryBroker, queue_name: str, prefetch: int, timeout_ms: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.canonical = canonical_queue(queue_name)
        self.lanes = broker.queues[queue_name]
        self.timeout_s = timeout_ms / 1000
        self.slots = threading.Semaphore(prefetch)

    def ack(self, message: dramatiq.MessageProxy) -> None:
        self.broker.running.pop(message.message_id, None)
        self.lanes.task_done()
        self.slots.release()

    def nack(self, message: dramatiq.MessageProxy) -> None:
        self.broker.running.pop(message.message_id, None)
        self.broker.dead_letter(self.queue_name, message)
        self.lanes.task_done()
        self.slots.release()

    def requeue(self, messages: Sequence[dramatiq.MessageProxy]) -> None:  # type: ignore[override]
        """Put unstarted prefetched messages back at the head of their priority (worker shutdown)."""
        for message in messages:
            self.broker.running.pop(message.message_id, None)
            self.broker.put_back(message)
            self.lanes.task_done()
            self.slots.release()

    def __next__(self) -> dramatiq.MessageProxy | None:
        if self.canonical in self.broker.paused_queues():
            time.sleep(self.timeout_s)
            return None
        if not self.slots.acquire(timeout=self.timeout_s):
            return None
        next_due_ms = self.broker.schedule.release_due(self.queue_name)
        try:  # wake up for the next scheduled message of this queue
            item = self.lanes.get(timeout=max(0.001, min(self.timeout_s, (next_due_ms - current_millis()) / 1000)))
        except queue.Empty:
            self.slots.release()
            return None
        if self.canonical in self.broker.paused_queues():  # paused while this consumer waited: hand it back
            self.lanes.put_front(item)
            self.lanes.task_done()
            self.slots.release()
            return None
        _, data = item
        message = dramatiq.Message.decode(data)
        self.broker.running[message.message_id] = data
        return _StubMessageProxy(message)
