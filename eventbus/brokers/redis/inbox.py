"""The in-app notification inbox in Redis.

Layout under the namespace: ``inbox:<user>`` (zset id -> created µs), ``inbox:<user>:items``
(hash id -> JSON) and ``inbox:<user>:unread`` (set of ids). Storing is idempotent by notification id.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from eventbus.brokers.redis.lua import load
from eventbus.notification import Notification

if TYPE_CHECKING:
    from eventbus.brokers.redis.broker import RedisBroker

_STORE = load("inbox_store")


class RedisInbox:
    """Every user's inbox under one namespace."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.client = broker.client
        self._store: Any = self.client.register_script(_STORE)

    def store_notification(self, notification: Notification, limit: int) -> None:
        payload = json.dumps(notification.to_dict())
        keys = self._keys(notification.user_id)
        self._store(keys=keys, args=[notification.id, notification.created_us, payload, limit])

    def items_of(self, user: str, limit: int, unread_only: bool) -> list[Notification]:
        zset, items, unread = self._keys(user)
        ids = [i.decode() for i in self.client.zrevrange(zset, 0, -1 if unread_only else limit - 1)]
        unread_ids = {i.decode() for i in self.client.smembers(unread)}
        if unread_only:
            ids = [i for i in ids if i in unread_ids][:limit]
        if not ids:
            return []
        raw = self.client.hmget(items, ids)
        return [Notification.from_dict(json.loads(r), read=i not in unread_ids) for i, r in zip(ids, raw) if r]

    def mark_read(self, user: str, ids: list[str] | None) -> int:
        unread = self._keys(user)[2]
        if ids is None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.scard(unread)
                pipe.delete(unread)
                count, _ = pipe.execute()
            return int(count)
        if not ids:
            return 0
        return int(self.client.srem(unread, *ids))

    def unread_count(self, user: str) -> int:
        return int(self.client.scard(self._keys(user)[2]))

    def _keys(self, user: str) -> list[str]:
        base = self.broker.key("inbox", user)
        return [base, f"{base}:items", f"{base}:unread"]
