"""The two jobs behind every event: fan-out (one per event) and delivery (one per subscription)."""

from __future__ import annotations

import uuid
from typing import Any, cast

import dramatiq
from dramatiq.common import current_millis

from eventbus import signals
from eventbus.brokers import BusBroker, Message
from eventbus.errors import UnknownSubscription
from eventbus.event import Event, event_time_ms
from eventbus.priority import Priority
from eventbus.settings import Settings, get_settings
from eventbus.subscriber import Subscription, get_subscription, subscriptions_for

EVENTS_QUEUE = "events"
FANOUT_ACTOR = "eventbus.fanout"
DELIVER_ACTOR = "eventbus.deliver"
_DELIVERY_IDS = uuid.UUID("6f1c1e0e-9d4a-4d55-9a8e-0c2a4f7b9e10")
_BELOW_TIME = (1 << 80) - 1  # a UUID's bits after its 48-bit timestamp
_VERSION = 0xF << 76


def delivery_id(event_id: str, subscription: str) -> str:
    """The delivery's job id: the same for the same (event, subscription), across retries and re-runs.

    The SHA-1 name of the pair, as in uuid5, with the event's time (from its ULID) in the first 48 bits:
    a UUID version 8 laid out like a version 7 (RFC 9562), so delivery ids sort by event time. The
    SQLite broker and ledger index jobs by id; ids that arrive and leave in time order fill and empty
    those indexes at their ends, where a random id dirties a random page per job. An event id that is
    not a ULID (one the publisher chose) gives the plain uuid5.
    """
    name = uuid.uuid5(_DELIVERY_IDS, f"{event_id}\x00{subscription}")
    ms = event_time_ms(event_id)
    if ms is None:
        return str(name)
    return str(uuid.UUID(int=(ms << 80) | (name.int & _BELOW_TIME & ~_VERSION) | (8 << 76)))


def build_message(queue: str, actor: str, kwargs: dict[str, Any], options: dict[str, Any], message_id: str) -> Message:
    """A Dramatiq message, built without an Actor object so publishers need no actor imports."""
    return dramatiq.Message(
        queue_name=queue,
        actor_name=actor,
        args=(),
        kwargs=kwargs,
        options=options,
        message_id=message_id,
        message_timestamp=current_millis(),
    )


def delivery_message(event: dict[str, Any], sub: Subscription, priority: str | None, settings: Settings) -> Message:
    """The delivery of ``event`` to ``sub``, on the subscription's queue with its retry policy.

    Options the subscription leaves unset come from its queue's configuration (``settings.queue_config``).
    """
    queue = settings.queue_config(sub.queue or settings.default_queue)
    options = {
        "priority": priority or sub.priority.value,
        "max_retries": queue.max_retries if sub.max_retries is None else sub.max_retries,
        "min_backoff": queue.min_backoff_ms if sub.min_backoff_ms is None else sub.min_backoff_ms,
        "max_backoff": queue.max_backoff_ms if sub.max_backoff_ms is None else sub.max_backoff_ms,
        "subscription": sub.name,
        "event_id": event["id"],
        "topic": event["topic"],
    }
    return build_message(
        sub.queue or settings.default_queue,
        DELIVER_ACTOR,
        {"event": event, "subscription": sub.name},
        options,
        delivery_id(event["id"], sub.name),
    )


def plan_fanout(event: dict[str, Any], priority: str | None, settings: Settings) -> list[Message]:
    """The deliveries of ``event``: one per matching subscription (none for a topic nobody follows)."""
    return [delivery_message(event, sub, priority, settings) for sub in subscriptions_for(event["topic"])]


def once_key(delivery: Message) -> str:
    """The key that makes a delivery's enqueue happen once, however often its fan-out runs."""
    return f"delivery:{delivery.message_id}"


def fanout(event: dict[str, Any], priority: str | None = None) -> None:
    """Enqueue one delivery per matching subscription; re-running it enqueues nothing new.

    Brokers that fan out inside their events consumer (Redis, SQLite) never run this actor for
    fresh events; the in-memory broker and hand-made fan-out messages do.
    """
    settings = get_settings()
    messages = plan_fanout(event, priority, settings)
    if messages:
        broker = cast(BusBroker, dramatiq.get_broker())
        broker.enqueue_many(messages, once_keys=[once_key(m) for m in messages], once_ttl_s=settings.dedup_window_s)


def deliver(event: dict[str, Any], subscription: str) -> None:
    """Run one subscriber for one event; an exception is retried by the Retries middleware."""
    sub = get_subscription(subscription)
    if sub is None:
        raise UnknownSubscription(
            f"this worker has no subscription {subscription!r}; add its module to EVENTBUS_SUBSCRIBERS"
        )
    evt = Event.from_dict(event)
    message = dramatiq.middleware.CurrentMessage.get_current_message()
    attempt = 1 + (message.options.get("retries", 0) if message is not None else 0)
    try:
        sub.fn(evt)
    except Exception as exc:
        signals.failed.send(evt, subscription=subscription, exception=exc, attempt=attempt)
        raise
    signals.delivered.send(evt, subscription=subscription)


def install_actors(broker: dramatiq.Broker) -> None:
    """Declare the fan-out and delivery actors on ``broker`` (idempotent)."""
    for fn, name, queue in ((fanout, FANOUT_ACTOR, EVENTS_QUEUE), (deliver, DELIVER_ACTOR, "default")):
        if name not in broker.actors:
            dramatiq.Actor(fn, broker=broker, actor_name=name, queue_name=queue, priority=0, options={})


def event_priority(value: Priority | str | int | None) -> str | None:
    """The explicit priority of a publish, as carried in messages (None: each subscription's own)."""
    return None if value is None else Priority.parse(value, Priority.NORMAL).value
