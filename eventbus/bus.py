"""``publish_event`` and ``publish_many``: validate, then write one durable event message each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel

from eventbus import signals
from eventbus.broker import describe, get_broker
from eventbus.brokers import BusBroker, Message
from eventbus.delivery import EVENTS_QUEUE, FANOUT_ACTOR, build_message, event_priority
from eventbus.errors import EventBusError, PayloadNotSerializable, PublishError
from eventbus.event import Event, new_event_id
from eventbus.outbox import BEHIND, BROKER_ERRORS, Outbox, get_outbox, keep, write_advice
from eventbus.priority import Priority
from eventbus.settings import get_settings
from eventbus.topic import get_topic

Payload = Mapping[str, Any] | BaseModel


def publish_event(
    topic: str,
    payload: Payload,
    *,
    delay: timedelta | None = None,
    at: datetime | None = None,
    priority: Priority | str | int | None = None,
    event_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Event:
    """Validate ``payload`` against ``topic`` and write the event; returns it (``event.id``).

    A repeated ``event_id`` within the dedup window publishes once. Raises a subclass of
    EventBusError for bad input and PublishError when the broker cannot take the event;
    in both cases nothing is written.
    """
    event, message = _prepare(topic, payload, priority=priority, event_id=event_id, headers=headers)
    _write([message], [event], delay_ms=_delay_ms(delay, at), explicit_ids=event_id is not None)
    return event


def publish_many(
    events: Iterable[tuple[str, Payload]],
    *,
    delay: timedelta | None = None,
    at: datetime | None = None,
    priority: Priority | str | int | None = None,
) -> list[Event]:
    """Publish many ``(topic, payload)`` pairs in one write; all are validated first, and on PublishError
    none was written."""
    prepared = [_prepare(t, p, priority=priority, event_id=None, headers=None) for t, p in events]
    if prepared:
        _write([m for _, m in prepared], [e for e, _ in prepared], delay_ms=_delay_ms(delay, at), explicit_ids=False)
    return [e for e, _ in prepared]


def _prepare(
    topic: str,
    payload: Payload,
    *,
    priority: Priority | str | int | None,
    event_id: str | None,
    headers: Mapping[str, str] | None,
) -> tuple[Event, Message]:
    data = get_topic(topic).validate(payload)
    if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= 200):
        raise EventBusError(f"event_id must be a non-empty string of at most 200 characters, got {event_id!r}")
    clean_headers = _headers(headers)
    event = Event(topic=topic, payload=data, id=event_id or new_event_id(), headers=clean_headers)
    level = event_priority(priority)
    message = build_message(
        EVENTS_QUEUE,
        FANOUT_ACTOR,
        {"event": event.to_dict(), "priority": level},
        # Stored under the event id, so the control plane can find an event no worker has taken yet.
        {
            "priority": level or Priority.NORMAL.value,
            "event_id": event.id,
            "topic": topic,
            "redis_message_id": event.id,
        },
        event.id,
    )
    return event, message


def _write(messages: list[Message], events: list[Event], *, delay_ms: int | None, explicit_ids: bool) -> None:
    settings = get_settings()
    broker = get_broker()
    outbox = get_outbox(settings)
    once = [f"event:{e.id}" for e in events] if explicit_ids else None
    try:
        if outbox is not None and outbox.still_pending():
            _to_outbox(outbox, messages, events, delay_ms, BEHIND)
            return
        written = cast(BusBroker, broker).enqueue_many(
            messages, delay_ms=delay_ms, once_keys=once, once_ttl_s=settings.dedup_window_s
        )
    except (TypeError, ValueError) as exc:  # raised while encoding, before anything is written
        raise PayloadNotSerializable(
            f"payload cannot be written as JSON ({exc}); use str, int, float, bool, None, list and dict"
        ) from None
    except BROKER_ERRORS as exc:
        problem = f"could not publish {len(messages)} event(s) to {describe(broker)}: {exc}"
        if outbox is None:
            raise PublishError(f"{problem}; {write_advice(exc, 'events')}") from None
        _to_outbox(outbox, messages, events, delay_ms, problem)
        return
    # A repeated event_id writes nothing, so it is not published again either.
    fresh = {m.message_id for m in written} if len(written) < len(events) else None
    for event in events:
        if fresh is None or event.id in fresh:
            signals.published.send(event)


def _to_outbox(outbox: Outbox, messages: list[Message], events: list[Event], delay_ms: int | None, why: str) -> None:
    keep(outbox, messages, [f"event:{e.id}" for e in events], delay_ms=delay_ms, why=why)
    for event in events:
        signals.published.send(event)


def _delay_ms(delay: timedelta | None, at: datetime | None) -> int | None:
    if delay is not None and at is not None:
        raise EventBusError("pass delay= or at=, not both")
    if at is not None:
        if at.tzinfo is None:
            raise EventBusError("at= must be timezone-aware (e.g. datetime.now(timezone.utc) + ...)")
        delay = at - datetime.now(UTC)
    if delay is None:
        return None
    if not isinstance(delay, timedelta):
        raise EventBusError(f"delay= must be a datetime.timedelta, got {type(delay).__name__}")
    return max(0, int(delay.total_seconds() * 1000))


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if not headers:
        return {}
    out = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise PayloadNotSerializable(f"header {key!r} must map a str to a str, got {type(value).__name__}")
        out[key] = value
    return out
