"""List and cancel scheduled work (``delay=`` / ``at=`` publishes and sends, and pending retries).

Ids are the ones publishers get back: ``publish_event(...).id`` for an event, the job id for a send.
Scheduled items live in the broker's store until due (see :mod:`eventbus.brokers.redis.schedule` and
:mod:`eventbus.brokers.sqlite.schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import dramatiq

from eventbus.broker import get_broker
from eventbus.brokers import BusBroker
from eventbus.clock import now_ms
from eventbus.cron import ScheduleInfo, schedule_infos
from eventbus.errors import ConfigError
from eventbus.stores import ScheduleStore


@dataclass(frozen=True)
class ScheduledJob:
    """One scheduled message: its id, when it is due, and what it will run."""

    message_id: str
    due_at: datetime
    queue: str
    actor: str
    priority: str
    topic: str | None
    retries: int
    message: dramatiq.Message[Any]


@dataclass(frozen=True)
class ScheduledPage:
    """A page of :func:`scheduled`; pass ``next_cursor`` back for the next one (None: no more)."""

    items: list[ScheduledJob]
    next_cursor: int | None
    total: int


def scheduled(limit: int = 100, cursor: int = 0, *, broker: dramatiq.Broker | None = None) -> ScheduledPage:
    """Scheduled messages, soonest first, ``limit`` from ``cursor``."""
    store = _store(broker)
    if not isinstance(limit, int) or not 0 < limit <= 10_000 or not isinstance(cursor, int) or cursor < 0:
        raise ConfigError(f"scheduled(limit={limit!r}, cursor={cursor!r}): use 1 <= limit <= 10000 and cursor >= 0")
    entries = store.page(cursor, limit)
    total = store.count()
    items = [
        ScheduledJob(
            message_id=e.message_id,
            due_at=datetime.fromtimestamp(e.eta_ms / 1000, UTC),
            queue=e.queue,
            actor=e.message.actor_name,
            priority=str(e.message.options.get("priority") or "normal"),
            topic=e.message.options.get("topic"),
            retries=int(e.message.options.get("retries", 0)),
            message=e.message,
        )
        for e in entries
    ]
    more = cursor + limit < total
    return ScheduledPage(items=items, next_cursor=cursor + limit if more else None, total=total)


def cancel(message_id: str, *, broker: dramatiq.Broker | None = None) -> bool:
    """Cancel a scheduled message by id; True if it was scheduled and now never runs."""
    return bool(_store(broker).cancel(message_id))


def schedules(*, broker: dramatiq.Broker | None = None) -> list[ScheduleInfo]:
    """Recurring schedules registered by running workers (and this process), with next and last run."""
    store = cast(BusBroker, broker or get_broker()).stores.schedule
    return schedule_infos(store.schedule_definitions(), store.last_ticks(), now_ms())


def _store(broker: dramatiq.Broker | None) -> ScheduleStore:
    return cast(BusBroker, broker or get_broker()).stores.schedule
