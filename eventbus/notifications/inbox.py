"""The in-app inbox: newest first, per user, in the broker's store, with read state.

On SQLite it lives in the broker's file (:mod:`eventbus.brokers.sqlite.inbox`); on ``memory://`` in the process.

Redis layout under the namespace: ``inbox:<user>`` (zset id -> created µs), ``inbox:<user>:items``
(hash id -> JSON) and ``inbox:<user>:unread`` (set of ids). Storing is idempotent by notification id.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import dramatiq

from eventbus.broker import get_broker
from eventbus.brokers.sqlite.inbox import SQLiteInbox
from eventbus.brokers.sqlite.store import SQLiteStore
from eventbus.notifications.notification import Notification
from eventbus.settings import get_settings

# KEYS: zset, items, unread; ARGV: id, score, json, max items
_STORE = """
if redis.call("zadd", KEYS[1], "NX", ARGV[2], ARGV[1]) == 1 then
    redis.call("hset", KEYS[2], ARGV[1], ARGV[3])
    redis.call("sadd", KEYS[3], ARGV[1])
end
local extra = redis.call("zcard", KEYS[1]) - tonumber(ARGV[4])
if extra > 0 then
    local old = redis.call("zrange", KEYS[1], 0, extra - 1)
    redis.call("zremrangebyrank", KEYS[1], 0, extra - 1)
    redis.call("hdel", KEYS[2], unpack(old))
    redis.call("srem", KEYS[3], unpack(old))
end
return 1
"""


class InboxChannel:
    """Stores notifications for the app to list (``inbox_list``) and mark read."""

    name = "inbox"

    def send(self, notification: Notification) -> None:
        """Store ``notification`` in its user's inbox (a second store of the same id changes nothing)."""
        broker = get_broker()
        user = notification.user_id
        payload = json.dumps(notification.to_dict())
        limit = get_settings().inbox_max_items
        client = getattr(broker, "client", None)
        if client is None:
            _local(broker).store_notification(notification, limit)
            return
        script = client.register_script(_STORE)
        script(keys=_keys(broker, user), args=[notification.id, notification.created_us, payload, limit])


def inbox_list(user_id: str, *, limit: int = 50, unread_only: bool = False) -> list[Notification]:
    """The user's notifications, newest first."""
    broker = get_broker()
    client = getattr(broker, "client", None)
    if client is None:
        return _local(broker).items_of(str(user_id), limit, unread_only)
    zset, items, unread = _keys(broker, str(user_id))
    ids = [i.decode() for i in client.zrevrange(zset, 0, -1 if unread_only else limit - 1)]
    unread_ids = {i.decode() for i in client.smembers(unread)}
    if unread_only:
        ids = [i for i in ids if i in unread_ids][:limit]
    if not ids:
        return []
    raw = client.hmget(items, ids)
    return [Notification.from_dict(json.loads(r), read=i not in unread_ids) for i, r in zip(ids, raw) if r]


def inbox_mark_read(user_id: str, ids: list[str] | None = None) -> int:
    """Mark ``ids`` (default: all) read; returns how many were unread."""
    broker = get_broker()
    client = getattr(broker, "client", None)
    if client is None:
        return _local(broker).mark_read(str(user_id), ids)
    _, _, unread = _keys(broker, str(user_id))
    if ids is None:
        with client.pipeline(transaction=True) as pipe:
            pipe.scard(unread)
            pipe.delete(unread)
            count, _ = pipe.execute()
        return int(count)
    if not ids:
        return 0
    return int(client.srem(unread, *ids))


def inbox_unread_count(user_id: str) -> int:
    """How many of the user's notifications are unread (one Redis call)."""
    broker = get_broker()
    client = getattr(broker, "client", None)
    if client is None:
        return _local(broker).unread_count(str(user_id))
    return int(client.scard(_keys(broker, str(user_id))[2]))


def _keys(broker: Any, user: str) -> list[str]:
    base = broker.key("inbox", user)
    return [base, f"{base}:items", f"{base}:unread"]


class _MemoryInbox:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Notification]] = {}
        self.unread: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def store_notification(self, n: Notification, limit: int) -> None:
        with self.lock:
            box = self.items.setdefault(n.user_id, {})
            if n.id not in box:
                box[n.id] = n
                self.unread.setdefault(n.user_id, set()).add(n.id)
            for old in sorted(box, key=lambda i: (box[i].created_us, i))[: max(0, len(box) - limit)]:
                del box[old]
                self.unread[n.user_id].discard(old)

    def items_of(self, user: str, limit: int, unread_only: bool) -> list[Notification]:
        with self.lock:
            unread = self.unread.get(user, set())
            box = sorted(self.items.get(user, {}).values(), key=lambda n: (n.created_us, n.id), reverse=True)
            out = [Notification.from_dict(n.to_dict(), read=n.id not in unread) for n in box]
        return [n for n in out if not (unread_only and n.read)][:limit]

    def mark_read(self, user: str, ids: list[str] | None) -> int:
        with self.lock:
            unread = self.unread.get(user, set())
            hit = set(unread) if ids is None else unread & set(ids)
            unread -= hit
            return len(hit)

    def unread_count(self, user: str) -> int:
        with self.lock:
            return len(self.unread.get(user, set()))


def _local(broker: dramatiq.Broker) -> _MemoryInbox | SQLiteInbox:
    """The inbox of a broker without Redis: in the SQLite broker's file, else in this process's memory."""
    inbox: _MemoryInbox | SQLiteInbox | None = getattr(broker, "_eventbus_inbox", None)
    if inbox is None:
        store = getattr(broker, "store", None)
        inbox = SQLiteInbox(store) if isinstance(store, SQLiteStore) else _MemoryInbox()
        broker._eventbus_inbox = inbox  # type: ignore[attr-defined]
    return inbox
