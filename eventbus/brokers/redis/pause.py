"""Paused queues in Redis: the set ``<ns>:__paused__`` (read by the fetch script too) and the hand-back."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from eventbus.brokers import list_suffix
from eventbus.brokers.redis.lua import load

if TYPE_CHECKING:
    from eventbus.brokers.redis.broker import RedisBroker

_PUT_BACK = load("pause_put_back")


def paused_key(namespace: str) -> str:
    """The set of paused queue names (read by the broker's fetch script too)."""
    return f"{namespace}:__paused__"


class RedisPause:
    """The paused set of one namespace, and how a fetched message goes back to its list."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.key = paused_key(broker.namespace)
        self._script: Any = broker.client.register_script(_PUT_BACK)
        self._last: dict[str, tuple[str, str]] = {}  # list key -> (queue, last id put back)
        self._lock = threading.Lock()

    def paused(self) -> set[str]:
        return {q.decode() for q in self.broker.client.smembers(self.key)}

    def put_back(self, message: Any) -> None:
        """Un-ack ``message`` and put it back right after the last one this process put back in its list."""
        broker = self.broker
        target = f"{broker.namespace}:{message.queue_name}{list_suffix(message._message)}"
        acks = f"{broker.namespace}:__acks__.{broker.broker_id}.{message.queue_name}"
        redis_id = message.options["redis_message_id"]
        with self._lock:
            pivot = self._last.get(target, ("", ""))[1]
            self._script(keys=[acks, target], args=[redis_id, pivot])
            self._last[target] = (message.queue_name, redis_id)
        # Dramatiq acks a skipped message next. If this process fetched the message again in the
        # meantime (right after a resume), that ack would delete the data of the new copy: point it
        # at an id that does not exist, so it is a no-op.
        message.options["redis_message_id"] = f"handed-back:{redis_id}"

    def forget(self, paused: set[str]) -> None:
        """Drop the hand-back order of queues no longer paused."""
        with self._lock:
            self._last = {k: v for k, v in self._last.items() if v[0] in paused}
