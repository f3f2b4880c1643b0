"""Subscribers for the control-plane tests; every call is recorded in Redis under the worker's namespace.

- ``ctl.happened``: ``ok_a`` and ``ok_b`` (queue ``ctl``) succeed; ``broken`` (queue ``ctl_dead``,
  max_retries=2) fails until the key ``<ns>:test:fixed`` exists.
- ``ctl.slow``: ``slow`` (queue ``slow``) records its start time and sleeps ``sleep_ms``.
- ``ctl.flaky``: ``flaky_once`` (queue ``flaky``) takes 0.4 s per attempt and fails the first one.
"""

from __future__ import annotations

import time
from typing import Any

from eventbus import Event, declare_topic, subscribe
from eventbus.broker import get_broker

declare_topic("ctl.happened")
declare_topic("ctl.slow")
declare_topic("ctl.flaky")


def client_and_ns() -> tuple[Any, str]:
    broker: Any = get_broker()
    return broker.client, broker.namespace


def record(name: str, event: Event) -> int:
    client, ns = client_and_ns()
    return int(client.hincrby(f"{ns}:test:calls", f"{name}|{event.id}", 1))


@subscribe("ctl.happened", name="ok_a", queue="ctl")
def ok_a(event: Event) -> None:
    record("ok_a", event)


@subscribe("ctl.happened", name="ok_b", queue="ctl")
def ok_b(event: Event) -> None:
    record("ok_b", event)


@subscribe("ctl.happened", name="broken", queue="ctl_dead", max_retries=2, min_backoff_ms=50, max_backoff_ms=200)
def broken(event: Event) -> None:
    client, ns = client_and_ns()
    if client.exists(f"{ns}:test:fixed"):
        record("broken_fixed", event)
        return
    record("broken", event)
    raise RuntimeError(f"broken cannot handle {event.id}")


@subscribe("ctl.slow", name="ctl_slow", queue="slow")
def slow(event: Event) -> None:
    client, ns = client_and_ns()
    client.rpush(f"{ns}:test:starts", f"{time.time()}|{event.payload['n']}")
    time.sleep(float(event.payload.get("sleep_ms", 0)) / 1000)
    record("slow", event)


@subscribe("ctl.flaky", name="flaky_once", queue="flaky", max_retries=3, min_backoff_ms=600, max_backoff_ms=800)
def flaky_once(event: Event) -> None:
    time.sleep(0.4)
    if record("flaky_once", event) == 1:
        raise RuntimeError("first attempt of flaky_once fails")
