"""Subscribers for the contract suite; calls are recorded in this process (the worker runs in-process)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

import dramatiq

from eventbus import Event, declare_topic, subscribe

declare_topic("contract.happened")
declare_topic("contract.flaky")
declare_topic("contract.ordered")


@dataclass(frozen=True)
class Call:
    subscription: str
    event_id: str
    payload: dict[str, object]
    at: float


CALLS: list[Call] = []
_lock = threading.Lock()


def record(name: str, event: Event) -> None:
    with _lock:
        CALLS.append(Call(name, event.id, dict(event.payload), time.time()))


def counts() -> Counter[str]:
    with _lock:
        return Counter(f"{c.subscription}|{c.event_id}" for c in CALLS)


def calls_of(name: str) -> list[Call]:
    with _lock:
        return [c for c in CALLS if c.subscription == name]


@subscribe("contract.happened", name="c_first")
def c_first(event: Event) -> None:
    record("c_first", event)


@subscribe("contract.happened", name="c_second", queue="c_second")
def c_second(event: Event) -> None:
    record("c_second", event)


@subscribe("contract.*", name="c_third")
def c_third(event: Event) -> None:
    record("c_third", event)


@subscribe("contract.flaky", name="c_fails", queue="c_flaky", max_retries=2, min_backoff_ms=10, max_backoff_ms=50)
def c_fails(event: Event) -> None:
    record("c_fails", event)
    raise RuntimeError(f"c_fails broke on {event.id}")


@subscribe("contract.ordered", name="c_ordered", queue="c_ordered")
def c_ordered(event: Event) -> None:
    record("c_ordered", event)


declare_topic("contract.limited")
declare_topic("contract.capped")

RUNNING = {"now": 0, "max": 0}
RETRIES: list[int] = []  # the retry count each c_limited run saw (0: its first attempt)


@subscribe("contract.limited", name="c_limited", queue="c_limited")
def c_limited(event: Event) -> None:
    message = dramatiq.middleware.CurrentMessage.get_current_message()
    RETRIES.append(int(message.options.get("retries", 0)) if message is not None else -1)
    record("c_limited", event)


@subscribe("contract.capped", name="c_capped", queue="c_capped")
def c_capped(event: Event) -> None:
    with _lock:
        RUNNING["now"] += 1
        RUNNING["max"] = max(RUNNING["max"], RUNNING["now"])
    try:
        time.sleep(event.payload.get("sleep_ms", 150) / 1000)
        record("c_capped", event)
    finally:
        with _lock:
            RUNNING["now"] -= 1
