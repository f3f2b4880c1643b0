"""Stamps a message's dead-letter options (reason, attempts, error) just before it is nacked."""

from __future__ import annotations

import dramatiq

from eventbus.deadletter import nacked_options


class DeadLetterOptions(dramatiq.Middleware):
    """Every dead letter gets its ``reason``, ``attempts``, error and traceback, on every broker.

    The SQLite and Redis consumers build the same options in ``nack`` (so they hold without this
    middleware); this gives them to brokers whose ``nack`` keeps the message as it is (``memory://``).
    Undecodable and oversized messages never reach middleware: the consumers dead-letter them.
    """

    def before_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """Called just before the consumer moves ``message`` to the dead letters."""
        message.options.update(nacked_options(message.options, getattr(message, "_exception", None)))
