"""The channel protocol and registry: ``inbox`` and ``webhook`` are built in; users add their own."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from eventbus.errors import NotificationError
from eventbus.notification import Notification
from eventbus.settings import Settings, get_settings


@runtime_checkable
class Channel(Protocol):
    """Delivers notifications one way (in-app, webhook, push, SMS...). Raise to have the job retried.

    ``send`` may run more than once for the same notification (retries); make it idempotent by
    ``notification.id`` where the target allows.
    """

    name: str

    def send(self, notification: Notification) -> None:
        """Deliver one notification."""
        ...


_channels: dict[str, Channel] = {}


def register_channel(channel: Channel) -> Channel:
    """Make ``channel`` available to ``notify(channels=[channel.name])`` in this process (publisher and worker)."""
    if not isinstance(channel, Channel) or not isinstance(channel.name, str) or not channel.name:
        raise NotificationError(f"{channel!r} is not a channel: give it a name attribute and a send(notification)")
    _channels[channel.name] = channel
    return channel


def get_channel(name: str, settings: Settings | None = None) -> Channel:
    """The registered channel ``name``; the built-ins are created on first use from the settings."""
    found = _channels.get(name)
    if found is not None:
        return found
    settings = settings or get_settings()
    if name == "inbox":
        from eventbus.notifications.inbox import InboxChannel

        return register_channel(InboxChannel())
    if name == "webhook":
        if not settings.notify_webhook_url:
            raise NotificationError("the webhook channel needs NOTIFY_WEBHOOK_URL (and NOTIFY_WEBHOOK_SECRET) set")
        from eventbus.notifications.webhook import WebhookChannel

        return register_channel(WebhookChannel(settings.notify_webhook_url, settings.notify_webhook_secret))
    known = sorted({"inbox", "webhook", *_channels})
    raise NotificationError(f"unknown notification channel {name!r}; known: {', '.join(known)} (or register_channel)")


def default_channels(settings: Settings | None = None) -> list[str]:
    """``inbox``, plus ``webhook`` when NOTIFY_WEBHOOK_URL is set."""
    settings = settings or get_settings()
    return ["inbox", "webhook"] if settings.notify_webhook_url else ["inbox"]


def unregister_channel(name: str) -> None:
    """Forget a channel (tests)."""
    _channels.pop(name, None)
