"""A schedule that ticks every second, and a subscriber recording each tick it receives."""

from __future__ import annotations

from typing import Any

import dramatiq

from eventbus import Event, add_schedule, schedule, subscribe
from eventbus.broker import get_broker
from eventbus.delivery import FANOUT_ACTOR

add_schedule("every-second", topic="q.tick", every_s=1, payload={"source": "add_schedule"})


@schedule("0 9 * * MON", topic="q.weekly", payload=lambda tick: {"week_of": tick.date().isoformat()}, tz="Europe/Paris")
def weekly(event: Event) -> None:
    """Never ticks during a test; shows the decorator form in the control plane listing."""


def client_and_ns() -> tuple[Any, str]:
    broker: Any = get_broker()
    return broker.client, broker.namespace


@subscribe("q.tick", name="record_tick")
def record_tick(event: Event) -> None:
    client, ns = client_and_ns()
    client.hincrby(f"{ns}:test:ticks", event.headers["scheduled_for"], 1)


class CountEventMessages(dramatiq.Middleware):
    """Counts event messages of q.tick run by the fan-out, per tick: more than one means a tick was published twice."""

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        event = message.kwargs.get("event") or {}
        if message.actor_name == FANOUT_ACTOR and event.get("topic") == "q.tick":
            client, ns = client_and_ns()
            client.hincrby(f"{ns}:test:tick_events", event["headers"]["scheduled_for"], 1)


get_broker().add_middleware(CountEventMessages())
