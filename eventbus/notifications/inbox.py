"""The in-app inbox: newest first, per user, in the broker's store (``broker.stores.inbox``), with read state."""

from __future__ import annotations

from typing import cast

from eventbus.broker import get_broker
from eventbus.brokers import BusBroker
from eventbus.notification import Notification
from eventbus.settings import get_settings
from eventbus.stores import InboxStore


class InboxChannel:
    """Stores notifications for the app to list (``inbox_list``) and mark read."""

    name = "inbox"

    def send(self, notification: Notification) -> None:
        """Store ``notification`` in its user's inbox (a second store of the same id changes nothing)."""
        _inbox().store_notification(notification, get_settings().inbox_max_items)


def inbox_list(user_id: str, *, limit: int = 50, unread_only: bool = False) -> list[Notification]:
    """The user's notifications, newest first."""
    return _inbox().items_of(str(user_id), limit, unread_only)


def inbox_mark_read(user_id: str, ids: list[str] | None = None) -> int:
    """Mark ``ids`` (default: all) read; returns how many were unread."""
    return _inbox().mark_read(str(user_id), ids)


def inbox_unread_count(user_id: str) -> int:
    """How many of the user's notifications are unread (one round trip)."""
    return _inbox().unread_count(str(user_id))


def _inbox() -> InboxStore:
    return cast(BusBroker, get_broker()).stores.inbox
