"""A schedule that ticks every second, and a subscriber recording each tick it receives."""

from __future__ import annotations

from typing import Any

from eventbus import Event, add_schedule, schedule, subscribe
from eventbus.broker import get_broker

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
