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

_PING_AFTER_S = 10.0  # a silent subscription is checked with a PING...
_PONG_WITHIN_S = 5.0  # ...and dropped if nothing arrives within this


class Bell:
    """One queue's bell: ``event`` wakes its consumer, ``rings`` counts rings from Redis.

    A consumer also sets ``event`` itself (a refill, a handed-over message); only a change of
    ``rings`` says that Redis has new messages to fetch.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.rings = 0

    def ring(self) -> None:
        self.rings += 1
        self.event.set()


class Doorbell:
    """Per-process registry of queue events, fed by one pub/sub listener thread."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:  # type: ignore[type-arg]
        pool = client.connection_pool
        self._connection_class: Any = pool.connection_class
        self._connection_kwargs = {**pool.connection_kwargs, "socket_timeout": 5}
        self.channel = f"{namespace}:__bell__"
        self._bells: dict[bytes, Bell] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def bell(self, queue: str) -> Bell:
        """The bell rung when ``queue`` may have work; starts the listener on first use."""
        with self._lock:
            found = self._bells.setdefault(queue.encode(), Bell())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name="eventbus-doorbell", daemon=True)
                self._thread.start()
            return found

    def _listen(self) -> None:
        while True:
            conn = self._connection_class(**self._connection_kwargs)
            try:
                self._serve(conn)
            except redis.RedisError as exc:
                logger.warning("doorbell: %s; consumers poll until it reconnects", exc)
                time.sleep(0.5)
            except Exception:  # never die silently: consumers would fall back to their idle timeout for good
                logger.exception("doorbell: unexpected error; reconnecting")
                time.sleep(0.5)
            finally:
                conn.disconnect()

    def _serve(self, conn: Any) -> None:
        """Read rings straight off the subscribed connection (redis-py's PubSub does far more work per ring)."""
        conn.send_command("SUBSCRIBE", self.channel)
        conn.read_response(push_request=True)  # redis-py parses pub/sub frames as push replies
        # Rings may have been missed while disconnected: every consumer looks once.
        self.ring_all()
        heard = pinged = time.monotonic()
        while True:
            if conn.can_read(timeout=1.0):
                reply = conn.read_response(push_request=True)
                heard = time.monotonic()
                if reply[0] == b"message":
                    bell = self._bells.get(reply[2])
                    if bell is not None:
                        bell.ring()
                continue
            now = time.monotonic()
            if now - heard < _PING_AFTER_S:
                continue
            if pinged <= heard:
                conn.send_command("PING")  # answered by a pong among the rings
                pinged = now
            elif now - pinged > _PONG_WITHIN_S:
                raise redis.ConnectionError("no answer to PING on the doorbell subscription")

    def ring_all(self) -> None:
        """Wake every waiting consumer of this process."""
        with self._lock:
            bells = list(self._bells.values())
        for bell in bells:
            bell.ring()
