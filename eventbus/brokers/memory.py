"""``memory://``: Dramatiq's StubBroker with the bus extensions, for unit tests only."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis, dq_name

from eventbus.brokers import Message
from eventbus.brokers.hooks import HookCache
from eventbus.brokers.memory_stores import MemoryStores
from eventbus.settings import Settings, get_settings


class MemoryBroker(HookCache, StubBroker):
    """In-process broker: no persistence, no priority across queues; once-keys live in a dict."""

    def __init__(self, middleware: list[dramatiq.Middleware] | None = None, settings: Settings | None = None) -> None:
        super().__init__(middleware, fail_fast_default=False)
        self.namespace = "memory"
        self._once: dict[str, float] = {}
        self._once_lock = threading.Lock()
        self.paused: set[str] = set()
        self.stores = MemoryStores(self, settings or get_settings())

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
                self.declare_queue(message.queue_name.removesuffix(".DQ"))
            staged.append((message, message.encode()))
        keys = list(once_keys) if once_keys is not None else [None] * len(staged)
        now = time.monotonic()
        out = []
        with self._once_lock:
            for (message, data), key in zip(staged, keys):
                if key is not None:
                    if self._once.get(key, 0.0) > now:
                        continue
                    self._once[key] = now + once_ttl_s
                self.emit_before("enqueue", message, delay_ms)
                self.queues[message.queue_name].put(data)
                self.emit_after("enqueue", message, delay_ms)
                out.append(message)
        return out
