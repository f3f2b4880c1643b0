"""The notification job: one per (notification, channel), so a failing channel retries alone."""

from __future__ import annotations

from typing import Any

import dramatiq

from eventbus.notification import Notification
from eventbus.notifications.channel import get_channel

NOTIFICATIONS_QUEUE = "notifications"
NOTIFY_ACTOR = "eventbus.notify"


def deliver_notification(notification: dict[str, Any], channel: str) -> None:
    """Hand one notification to one channel; an exception is retried by the Retries middleware."""
    get_channel(channel).send(Notification.from_dict(notification))


def install_actors(broker: dramatiq.Broker) -> None:
    """Declare the notification actor on ``broker`` (idempotent)."""
    if NOTIFY_ACTOR not in broker.actors:
        dramatiq.Actor(
            deliver_notification,
            broker=broker,
            actor_name=NOTIFY_ACTOR,
            queue_name=NOTIFICATIONS_QUEUE,
            priority=0,
            options={},
        )
