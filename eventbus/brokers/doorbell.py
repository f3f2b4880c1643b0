"""Wake idle consumers when work arrives, instead of polling Redis.

Every enqueue publishes the queue's name on ``<ns>:__bell__`` (Redis pub/sub: pushed, no extra
round trip for anyone). One thread per process listens and sets that queue's event; a consumer
with nothing to do waits on its event (at most its idle timeout), so a message published to an
idle worker starts within about one round trip. Without a listener nothing is stored, and
consumers fall back to their idle timeout, so a missed ring only costs latency, never a message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

logger = logging.getLogger("eventbus.doorbell")


class Doorbell:
    """Per-process registry of queue events, fed by one pub/sub listener thread."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:  # type: ignore[type-arg]
        kwargs: dict[str, Any] = dict(client.connection_pool.connection_kwargs)
        kwargs["socket_timeout"] = 5  # the listener blocks for up to 1 s between messages
        self._client = redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))
        self.channel = f"{namespace}:__bell__"
        self._events: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def event(self, queue: str) -> threading.Event:
        """The event set when ``queue`` may have work; starts the listener on first use."""
        with self._lock:
            found = self._events.setdefault(queue.encode(), threading.Event())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name="eventbus-doorbell", daemon=True)
                self._thread.start()
            return found

    def _listen(self) -> None:
        while True:
            try:
                with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(self.channel)
                    # Rings may have been missed while disconnected: every consumer looks once.
                    self.ring_all()
                    while True:
                        message = pubsub.get_message(timeout=1.0)
                        if message is not None:
                            event = self._events.get(message["data"])
                            if event is not None:
                                event.set()
            except redis.RedisError as exc:
                logger.warning("doorbell: %s; consumers poll until it reconnects", exc)
                time.sleep(0.5)
            except Exception:  # never die silently: consumers would fall back to their idle timeout for good
                logger.exception("doorbell: unexpected error; reconnecting")
                time.sleep(0.5)

    def ring_all(self) -> None:
        """Wake every waiting consumer of this process."""
        with self._lock:
            events = list(self._events.values())
        for event in events:
            event.set()
