"""The middleware stack every eventbus broker gets."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import AsyncIO, CurrentMessage
from dramatiq.middleware import default_middleware as dramatiq_defaults
from dramatiq.middleware.retries import Retries

from eventbus.middleware.deadletter import DeadLetterOptions
from eventbus.middleware.housekeeping import Housekeeping
from eventbus.middleware.ledger import Ledger
from eventbus.middleware.lifecycle import Lifecycle
from eventbus.middleware.limits import QueueLimits
from eventbus.middleware.outbox import OutboxRelay
from eventbus.middleware.pause import PauseGate
from eventbus.middleware.reconnect import Reconnect
from eventbus.middleware.retries import PatientRetries
from eventbus.middleware.stop import PromptStop
from eventbus.middleware.upkeep import Upkeep
from eventbus.settings import Settings


def default_middleware(settings: Settings) -> list[dramatiq.Middleware]:
    """Dramatiq's defaults (Retries set from settings), the current message, and lifecycle signals."""
    stack: list[dramatiq.Middleware] = []
    for cls in dramatiq_defaults:
        if cls is Retries:
            stack.append(
                PatientRetries(  # faults: Dramatiq's Retries, waiting for the broker instead of dropping a retry
                    wait_s=settings.reconnect_delay_s,
                    queue_config=settings.queue_config,  # a job without a retry policy of its own: its queue's
                    max_retries=settings.max_retries,
                    min_backoff=settings.min_backoff_ms,
                    max_backoff=settings.max_backoff_ms,
                )
            )
        else:
            stack.append(cls())
    stack += [CurrentMessage(), Lifecycle()]
    # mail: async send actors need the event loop thread; the pool closes before the loop stops
    from eventbus.mail.middleware import SmtpPoolCloser

    stack += [AsyncIO(), SmtpPoolCloser()]
    # A paused queue's message is handed back before it takes a rate-limit slot or a concurrency
    # lease, and both gates decide before the ledger marks the job active.
    stack += [PauseGate(), QueueLimits(settings), Ledger(settings), Housekeeping(settings), Upkeep(settings)]
    # faults: dead-letter options (reason, attempts), reconnection, the outbox relay
    stack += [DeadLetterOptions(), Reconnect(settings.reconnect_delay_s), OutboxRelay(settings)]
    stack += [PromptStop(settings)]  # an idle worker process exits within a fraction of a second of SIGTERM
    return stack
