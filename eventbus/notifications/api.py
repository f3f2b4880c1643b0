"""``notify``: check, then enqueue one job per channel in one round trip."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from eventbus.broker import describe, get_broker
from eventbus.brokers import BusBroker
from eventbus.delivery import build_message
from eventbus.errors import NotificationError, PublishError
from eventbus.notification import Notification
from eventbus.notifications.channel import default_channels, get_channel
from eventbus.notifications.job import NOTIFICATIONS_QUEUE, NOTIFY_ACTOR
from eventbus.outbox import BEHIND, BROKER_ERRORS, get_outbox, keep, write_advice
from eventbus.priority import Priority
from eventbus.settings import get_settings

_JOB_IDS = uuid.UUID("5b8f0a3e-2f4c-4f7e-9c1d-6a2b3c4d5e6f")


def notify(
    user_id: str | int,
    title: str,
    body: str,
    *,
    kind: str = "info",
    data: Mapping[str, Any] | None = None,
    channels: Sequence[str] | None = None,
    priority: Priority | str | int = Priority.NORMAL,
    max_retries: int | None = None,
    min_backoff_ms: int | None = None,
    max_backoff_ms: int | None = None,
) -> Notification:
    """Send a notification to ``user_id`` through ``channels`` (default: inbox, plus webhook if configured).

    Unknown channels, unserialisable ``data`` and bad retry options raise NotificationError before
    anything is written. Each channel's job retries by the ``notifications`` queue's rule
    (``eventbus queues``); ``max_retries`` and the backoffs replace it for this notification.
    With ``EVENTBUS_OUTBOX`` set, a broker error keeps the jobs in the outbox and the returned
    notification says ``outboxed``; without it, PublishError.
    """
    settings = get_settings()
    retry = settings.queue_config(NOTIFICATIONS_QUEUE).retry_options(
        max_retries=max_retries,
        min_backoff_ms=min_backoff_ms,
        max_backoff_ms=max_backoff_ms,
        error=NotificationError,
        caller="notify",
    )
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or str(user_id) == "":
        raise NotificationError(f"user_id must be a non-empty str or int, got {user_id!r}")
    for name, value in (("title", title), ("body", body), ("kind", kind)):
        if not isinstance(value, str):
            raise NotificationError(f"{name} must be a str, got {type(value).__name__}")
    names = list(dict.fromkeys(channels if channels is not None else default_channels(settings)))
    if not names:
        raise NotificationError("channels is empty; pass e.g. channels=['inbox']")
    for name in names:
        get_channel(name, settings)
    notification = Notification(user_id=str(user_id), title=title, body=body, kind=kind, data=dict(data or {}))
    try:
        json.dumps(notification.data)
    except (TypeError, ValueError) as exc:
        raise NotificationError(
            f"data cannot be written as JSON ({exc}); use str, int, float, bool, list, dict"
        ) from None
    level = Priority.parse(priority, Priority.NORMAL)
    messages = [
        build_message(
            NOTIFICATIONS_QUEUE,
            NOTIFY_ACTOR,
            {"notification": notification.to_dict(), "channel": name},
            {"priority": level.value, **retry},
            str(uuid.uuid5(_JOB_IDS, f"{notification.id}:{name}")),
        )
        for name in names
    ]
    broker = get_broker()
    outbox = get_outbox(settings)
    # With the outbox on, a job the relay enqueues again (a send that timed out but arrived) is skipped.
    keys: list[str | None] = [f"notify:{m.message_id}" for m in messages]
    if outbox is not None and outbox.still_pending():
        keep(outbox, messages, keys, delay_ms=None, why=BEHIND)
        return replace(notification, outboxed=True)
    try:
        once = keys if outbox is not None else None
        cast(BusBroker, broker).enqueue_many(messages, once_keys=once, once_ttl_s=settings.dedup_window_s)
    except BROKER_ERRORS as exc:
        problem = f"could not enqueue a notification on {describe(broker)}: {exc}"
        if outbox is None:
            raise PublishError(f"{problem}; {write_advice(exc, 'notifications')}") from None
        keep(outbox, messages, keys, delay_ms=None, why=problem)
        return replace(notification, outboxed=True)
    return notification
