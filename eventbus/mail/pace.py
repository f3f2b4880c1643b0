"""A bulk chunk under its queue's limits: each email counts as one job, as if it had been sent alone.

The email queue's rate limit ("10/s") and concurrency cap ("5 at once") are meant in emails. The
:class:`eventbus.middleware.limits.QueueLimits` middleware gives a chunk job one start slot and one
cap slot; the chunk then sends one email at a time and reserves a start slot of its own for every
email after the first. When the next slot is too far off, the emails not yet tried go back to the
durable schedule as a continuation of the chunk (never a failed attempt), as the middleware does
with a whole job. A chunk also hands its slot on after a slice of half ``concurrency_wait_ms``, its
continuation due a moment later, so a job waiting for the slot (a CRITICAL email) gets it well
within its wait instead of after the whole chunk.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any, cast

import dramatiq
from dramatiq.middleware import CurrentMessage

from eventbus.brokers import BusBroker
from eventbus.settings import Settings

_CONTINUATIONS = uuid.UUID("a4b7f0f6-2f7e-4d55-8f0c-61f3d0e6b2c1")
_UNLIMITED = 1 << 20
_KEPT_OPTIONS = frozenset({"priority", "max_retries", "min_backoff", "max_backoff", "retries"})


class Pacer:
    """The limits of the chunk being processed; without any, it never waits and adds no round trip."""

    def __init__(self, broker: Any, message: dramatiq.Message[Any] | None, settings: Settings) -> None:
        self.broker = broker
        self.message = message
        self.settings = settings
        config = settings.queue_config(message.queue_name) if message is not None else None
        self.queue = config.name if config is not None else ""
        self.rate = config.rate_limit if config is not None else None
        limited = config is not None and (config.concurrency or config.rate_limit)
        self.lanes = 1 if limited else _UNLIMITED
        self.defer_ms = 0
        # shorter than a job waits for a cap slot (QueueLimits), so a job waiting sees the slot freed
        self.slice_s = settings.concurrency_wait_ms / 2000
        self._started: float | None = None

    @classmethod
    def current(cls, settings: Settings) -> Pacer:
        """The pacer of the job being processed."""
        return cls(dramatiq.get_broker(), CurrentMessage.get_current_message(), settings)

    async def wait(self) -> bool:
        """Wait for the next email's start slot; False to stop (slot too far off, or the slice is used up)."""
        if self.lanes != 1:
            return True
        if self._started is None:  # the job's own slot, reserved by the middleware, covers the first email
            self._started = time.monotonic()
            return True
        if time.monotonic() - self._started > self.slice_s:  # a moment later, behind the jobs waiting for the slot
            self.defer_ms = random.randint(100, 300)
            return False
        if self.rate is None:
            return True
        limits = self.broker.stores.limits
        ok, wait_ms = await asyncio.to_thread(
            limits.reserve, self.queue, self.rate.interval_ms, float(self.settings.rate_limit_max_wait_ms)
        )
        if not ok:
            self.defer_ms = int(wait_ms)
            return False
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)
        return True

    async def defer(self, items: list[dict[str, Any]]) -> None:
        """Enqueue ``items`` (emails not tried) as a continuation of this chunk, due when the rate allows."""
        if self.message is None or not items:
            return
        keys = "\x00".join(item["key"] for item in items)
        message_id = str(uuid.uuid5(_CONTINUATIONS, f"{self.message.message_id}\x00{keys}"))
        continuation: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.message.queue_name.removesuffix(".DQ"),
            actor_name=self.message.actor_name,
            args=(),
            kwargs={**self.message.kwargs, "emails": items},
            options={k: v for k, v in self.message.options.items() if k in _KEPT_OPTIONS},
            message_id=message_id,
            message_timestamp=self.message.message_timestamp,
        )
        await asyncio.to_thread(
            cast(BusBroker, self.broker).enqueue_many,
            [continuation],
            delay_ms=self.defer_ms,
            once_keys=[f"mail:chunk:{message_id}"],
            once_ttl_s=self.settings.dedup_window_s,
        )
