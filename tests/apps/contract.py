"""Subscribers for the contract suite; calls are recorded in this process (the worker runs in-process)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

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
