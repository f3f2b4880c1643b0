"""Fires the dead-lettered signal when a delivery runs out of retries."""

from __future__ import annotations

from typing import Any

import dramatiq

from eventbus import signals
from eventbus.event import Event


class Lifecycle(dramatiq.Middleware):
    """Turns a nacked delivery into ``signals.dead_lettered``."""

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """Called in the worker thread once a message is in its queue's dead letters."""
        event = message.kwargs.get("event") if isinstance(message.kwargs, dict) else None
        if not isinstance(event, dict):
            return
        exception: Any = getattr(message, "_exception", None)
        signals.dead_lettered.send(
            Event.from_dict(event),
            subscription=message.kwargs.get("subscription"),
            error=f"{type(exception).__name__}: {exception}" if exception else None,
        )
