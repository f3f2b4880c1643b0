"""Shorter waits after a broker connection error, so a worker resumes within seconds of Redis returning."""

from __future__ import annotations

import os

import dramatiq
import dramatiq.worker


class Reconnect(dramatiq.Middleware):
    """Sets Dramatiq's consumer restart delay (3 s) and ack/nack retry interval (5 s) to ``delay_s``.

    Both are module constants in ``dramatiq.worker``, read each time they are used. An explicit
    ``dramatiq_restart_delay`` environment variable still wins for the restart delay.
    """

    def __init__(self, delay_s: float = 1.0) -> None:
        self.delay_s = delay_s

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Called in each worker process before its consumer threads start."""
        if "dramatiq_restart_delay" not in os.environ:
            setattr(dramatiq.worker, "CONSUMER_RESTART_DELAY_SECS", self.delay_s)  # noqa: B010
        setattr(dramatiq.worker, "POST_PROCESS_MESSAGE_RETRY_DELAY_SECS", self.delay_s)  # noqa: B010
