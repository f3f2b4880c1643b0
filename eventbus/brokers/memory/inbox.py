"""The in-app notification inbox of the ``memory://`` backend: dicts in this process."""

from __future__ import annotations

import threading

from eventbus.notification import Notification


class MemoryInbox:
    """Every user's inbox, in this process."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Notification]] = {}
        self.unread: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def store_notification(self, notification: Notification, limit: int) -> None:
        with self.lock:
            box = self.items.setdefault(notification.user_id, {})
            if notification.id not in box:
                box[notification.id] = notification
                self.unread.setdefault(notification.user_id, set()).add(notification.id)
            for old in sorted(box, key=lambda i: (box[i].created_us, i))[: max(0, len(box) - limit)]:
                del box[old]
                self.unread[notification.user_id].discard(old)

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
