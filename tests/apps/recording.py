"""Three subscribers of ``test.happened`` and three of ``test.flaky`` (one always fails).

Each call is recorded in Redis under the worker's namespace so the test process can count them.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq

from eventbus import Event, declare_topic, subscribe
from eventbus.broker import get_broker

declare_topic("test.happened")
declare_topic("test.flaky")


def client_and_ns() -> tuple[Any, str]:
    broker: Any = get_broker()
    return broker.client, broker.namespace


def record(name: str, event: Event) -> None:
    client, ns = client_and_ns()
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(f"{ns}:test:calls", f"{name}|{event.id}", 1)
    pipe.rpush(f"{ns}:test:times:{name}|{event.id}", time.time())
    pipe.execute()
    delay_ms = float(event.payload.get("sleep_ms", 0))
    if delay_ms:
        time.sleep(delay_ms / 1000)


@subscribe("test.happened", name="first")
def first(event: Event) -> None:
    record("first", event)


@subscribe("test.happened", name="second", queue="second")
def second(event: Event) -> None:
    record("second", event)


@subscribe("test.*", name="third")
def third(event: Event) -> None:
    record("third", event)


@subscribe("test.flaky", name="always_fails", max_retries=3, min_backoff_ms=100)
def always_fails(event: Event) -> None:
    record("always_fails", event)
    raise RuntimeError(f"always_fails broke on {event.id}")


@subscribe("test.flaky", name="fine")
def fine(event: Event) -> None:
    record("fine", event)


def on_events_queue(n: int) -> None:
    """A plain actor whose messages share the events queue: the fan-out consumer hands them to the worker."""
    client, ns = client_and_ns()
    client.hincrby(f"{ns}:test:calls", f"on_events|{n}", 1)


dramatiq.Actor(
    on_events_queue, broker=get_broker(), actor_name="test.on_events", queue_name="events", priority=0, options={}
)
