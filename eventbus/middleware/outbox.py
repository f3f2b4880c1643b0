"""Runs the outbox relay inside every worker process when EVENTBUS_OUTBOX is set."""

from __future__ import annotations

import dramatiq

from eventbus.outbox import Relay, get_outbox
from eventbus.settings import Settings


class OutboxRelay(dramatiq.Middleware):
    """Starts a relay thread once the worker is up and stops it (releasing its lease) on shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.relay: Relay | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Called in each worker process once its consumers run."""
        outbox = get_outbox(self.settings)
        if outbox is not None:
            self.relay = Relay(outbox, broker, dedup_ttl_s=self.settings.dedup_window_s)
            self.relay.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Called when the worker begins a graceful stop."""
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
