"""Notifications: ``notify`` a user through channels (in-app inbox, signed webhook, your own)."""

from eventbus.notification import Notification
from eventbus.notifications.api import notify
from eventbus.notifications.channel import Channel, register_channel
from eventbus.notifications.inbox import InboxChannel, inbox_list, inbox_mark_read, inbox_unread_count
from eventbus.notifications.webhook import WebhookChannel, verify_signature

__all__ = [
    "notify",
    "Notification",
    "Channel",
    "register_channel",
    "InboxChannel",
    "WebhookChannel",
    "verify_signature",
    "inbox_list",
    "inbox_mark_read",
    "inbox_unread_count",
]
