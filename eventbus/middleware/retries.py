"""Dramatiq's Retries, made safe for a broker outage: a retry is never dropped while the broker is away."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.middleware.retries import Retries

from eventbus.errors import StoreBusy
from eventbus.queues import QueueConfig

logger = logging.getLogger("eventbus.retries")

BROKER_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    dramatiq.errors.BrokerConnectionError,
    sqlite3.OperationalError,
    StoreBusy,
)


class PatientRetries(Retries):
    """Like Dramatiq's Retries, but enqueueing the retry waits for the broker instead of failing.

    Dramatiq logs a failed retry enqueue as an "unexpected failure" and then acks the failed
    message, so a job that fails while the broker is down (a fan-out whose enqueue hit the
    outage) is lost. Here the worker thread retries the enqueue every ``wait_s`` until the broker
    takes it, like Dramatiq does for acks; if the worker is stopped meanwhile, the message was
    never acked and comes back from the broker.
    """

    def __init__(
        self, *, wait_s: float = 1.0, queue_config: Callable[[str], QueueConfig] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.wait_s = wait_s
        self.queue_config = queue_config

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Called after a job ran; schedules its retry when it raised."""
        if exception is not None and self.queue_config is not None:
            self._fill_in_queue_rule(broker, message)
        patient = _Patient(broker, self.wait_s)
        super().after_process_message(patient, message, result=result, exception=exception)  # type: ignore[no-untyped-call]

    def _fill_in_queue_rule(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """A job that carries no retry policy of its own (nor has its actor one) takes its queue's rule."""
        assert self.queue_config is not None
        config = self.queue_config(message.queue_name)
        actor_options = broker.get_actor(message.actor_name).options
        rule = {
            "max_retries": config.max_retries,
            "min_backoff": config.min_backoff_ms,
            "max_backoff": config.max_backoff_ms,
        }
        for option, value in rule.items():
            if option not in message.options and option not in actor_options:
                message.options[option] = value


class _Patient:
    """The broker, with an ``enqueue`` that retries connection errors until it succeeds."""

    def __init__(self, broker: dramatiq.Broker, wait_s: float) -> None:
        self._broker = broker
        self._wait_s = wait_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        waited = False
        while True:
            try:
                found: dramatiq.Message[Any] = self._broker.enqueue(message, delay=delay)
                if waited:
                    logger.warning("retry of message %s enqueued after the broker came back", message.message_id)
                return found
            except BROKER_ERRORS as exc:
                if not waited:
                    logger.warning(
                        "cannot enqueue the retry of message %s (%s); trying again every %.1f s",
                        message.message_id,
                        exc,
                        self._wait_s,
                    )
                waited = True
                time.sleep(self._wait_s)
