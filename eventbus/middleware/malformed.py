"""Marks messages for an actor no worker declares as malformed when they are dead-lettered."""

from __future__ import annotations

import dramatiq
from dramatiq.errors import ActorNotFound

from eventbus.brokers.malformed import MALFORMED


class MalformedReason(dramatiq.Middleware):
    """Dramatiq dead-letters a message for an unknown actor; this records ``reason="malformed"`` on it.

    (Undecodable and oversized messages never reach middleware: the consumers dead-letter them.)
    """

    def before_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """Called just before the consumer moves ``message`` to the dead letters."""
        if isinstance(getattr(message, "_exception", None), ActorNotFound):
            message.options["reason"] = MALFORMED
